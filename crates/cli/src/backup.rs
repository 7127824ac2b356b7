//! `aiaudit backup create|list|verify` and `aiaudit restore`: the command
//! line over `aiaudit-backup`. The log is read through the server's HTTP read
//! API (checkpoint, entry bundles) with an admin token.

use aiaudit_backup::{Location, LogSource, Progress};
use aiaudit_tlog::{Tile, TileKind, Verifier};
use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(subcommand)]
    command: BackupCommand,
}

#[derive(Subcommand, Debug)]
enum BackupCommand {
    /// Back up a running ledger, consistent with its latest signed checkpoint, then verify each copy.
    Create(CreateArgs),
    /// List the backups in a location.
    List(ListArgs),
    /// Check that a backup would restore: every file's SHA-256, every entry, the root against the signed checkpoint.
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// Base URL of the ledger, e.g. http://127.0.0.1:7381
    #[arg(long, env = "AIAUDIT_URL")]
    url: String,
    /// An admin token (entry bundles and the keyring need one).
    #[arg(long, env = "AIAUDIT_TOKEN")]
    token: Option<String>,
    /// Destination: a directory or s3://bucket/prefix (S3 settings from AWS_* env vars). Repeatable.
    #[arg(long, required = true)]
    to: Vec<String>,
    /// Continue the latest backup in each destination instead of taking a full one.
    #[arg(long)]
    incremental: bool,
    /// The log's verifier key (or a file holding it); default: the one the ledger announces.
    #[arg(long)]
    vkey: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ListArgs {
    /// A directory or s3://bucket/prefix.
    #[arg(long)]
    from: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// A directory or s3://bucket/prefix. Repeatable: each is verified on its own.
    #[arg(long, required = true)]
    from: Vec<String>,
    /// The backup to verify with its ancestors (default: the latest).
    id: Option<String>,
    /// The log's verifier key (or a file holding it). Without it the key saved in the
    /// backup is used, which proves nothing against whoever could rewrite the backup.
    #[arg(long)]
    vkey: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// A directory or s3://bucket/prefix.
    #[arg(long)]
    from: String,
    /// The backup to restore (with its ancestors); default: the latest.
    #[arg(long)]
    id: Option<String>,
    /// The new data directory (absent or empty).
    #[arg(long)]
    data_dir: PathBuf,
    /// The log's verifier key (or a file holding it); default: the one saved in the backup.
    #[arg(long)]
    vkey: Option<String>,
    /// The log's signing key file (`log.key`, kept apart from backups), copied into the data directory.
    #[arg(long)]
    signing_key: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn run(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match args.command {
        BackupCommand::Create(a) => {
            // A blocking HTTP client must not be made or dropped on the runtime.
            let source = HttpSource::new(&a.url, a.token.as_deref())?;
            let created = rt.block_on(create(a, &source));
            drop(source);
            created
        }
        BackupCommand::List(a) => rt.block_on(list(a)),
        BackupCommand::Verify(a) => rt.block_on(verify(a)),
    }
}

pub fn run_restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(restore(args))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn parse_locations(specs: &[String]) -> anyhow::Result<Vec<Location>> {
    specs.iter().map(|s| Location::parse(s)).collect()
}

fn load_vkey(arg: Option<&str>) -> anyhow::Result<Option<Verifier>> {
    arg.map(crate::verify::load_vkey).transpose()
}

async fn create(args: CreateArgs, source: &HttpSource) -> anyhow::Result<ExitCode> {
    let locations = parse_locations(&args.to)?;
    let vkey = load_vkey(args.vkey.as_deref())?;
    let bar = Bar::new(args.json);
    let created =
        aiaudit_backup::create(source, &locations, args.incremental, vkey.as_ref(), &bar).await?;
    let mut results = Vec::new();
    let mut ok = true;
    for (loc, r) in locations.iter().zip(created) {
        // A copy counts only once it is read back and would restore.
        let r = match r {
            Ok(s) => aiaudit_backup::verify(loc, Some(&s.id), vkey.as_ref(), &bar)
                .await
                .map(|v| (s, v)),
            Err(e) => Err(e),
        };
        match r {
            Ok((s, v)) => {
                if !args.json {
                    println!(
                        "OK: {} {} backup {} of {} at size {} (entries {}..{}, {} files, {} bytes), verified",
                        s.location,
                        kind_name(s.kind),
                        s.id,
                        v.origin,
                        s.size,
                        s.from,
                        s.size,
                        s.files,
                        s.bytes
                    );
                }
                results.push(json!({"location": s.location, "ok": true, "id": s.id,
                    "kind": kind_name(s.kind), "parent": s.parent, "from": s.from, "size": s.size,
                    "root": v.root, "files": s.files, "bytes": s.bytes}));
            }
            Err(e) => {
                ok = false;
                if !args.json {
                    println!("FAILED: {loc}: {e:#}");
                }
                results.push(
                    json!({"location": loc.to_string(), "ok": false, "error": format!("{e:#}")}),
                );
            }
        }
    }
    if args.json {
        println!("{}", json!({"ok": ok, "backups": results}));
    }
    Ok(exit(ok))
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let loc = Location::parse(&args.from)?;
    let manifests = loc.manifests().await?;
    if args.json {
        let items: Vec<_> = manifests
            .iter()
            .map(|m| {
                json!({"id": m.id, "kind": kind_name(m.kind), "parent": m.parent, "origin": m.origin,
                       "from": m.from, "size": m.size, "root": m.root, "created": m.created,
                       "bytes": m.files.iter().map(|f| f.bytes).sum::<u64>()})
            })
            .collect();
        println!("{}", json!({"location": loc.to_string(), "backups": items}));
    } else if manifests.is_empty() {
        println!("no backups in {loc}");
    } else {
        for m in &manifests {
            let bytes: u64 = m.files.iter().map(|f| f.bytes).sum();
            println!(
                "{}  {:<11} entries {}..{}  {} bytes  {}{}",
                m.id,
                kind_name(m.kind),
                m.from,
                m.size,
                bytes,
                m.origin,
                m.parent
                    .as_ref()
                    .map(|p| format!("  (after {p})"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let locations = parse_locations(&args.from)?;
    let vkey = load_vkey(args.vkey.as_deref())?;
    let bar = Bar::new(args.json);
    let mut ok = true;
    let mut results = Vec::new();
    for loc in &locations {
        match aiaudit_backup::verify(loc, args.id.as_deref(), vkey.as_ref(), &bar).await {
            Ok(v) => {
                if !args.json {
                    println!(
                        "OK: {} backup {} of {} verified at size {} (root {}): chain {}, {} files, {} bytes{}",
                        v.location,
                        v.chain.last().map(String::as_str).unwrap_or(""),
                        v.origin,
                        v.size,
                        v.root,
                        v.chain.join(" + "),
                        v.files,
                        v.bytes,
                        if v.key_pinned { "" } else { " [key not pinned: pass --vkey]" }
                    );
                }
                results.push(json!({"location": v.location, "ok": true, "chain": v.chain,
                    "origin": v.origin, "size": v.size, "root": v.root, "files": v.files,
                    "bytes": v.bytes, "key_pinned": v.key_pinned}));
            }
            Err(e) => {
                ok = false;
                if !args.json {
                    println!("FAILED: {loc}: {e:#}");
                }
                results.push(
                    json!({"location": loc.to_string(), "ok": false, "error": format!("{e:#}")}),
                );
            }
        }
    }
    if args.json {
        println!("{}", json!({"ok": ok, "results": results}));
    }
    Ok(exit(ok))
}

async fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let loc = Location::parse(&args.from)?;
    let vkey = load_vkey(args.vkey.as_deref())?;
    let signing_key = args
        .signing_key
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    let bar = Bar::new(args.json);
    let r = match aiaudit_backup::restore(
        &loc,
        args.id.as_deref(),
        &args.data_dir,
        vkey.as_ref(),
        signing_key.as_deref(),
        &bar,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            if args.json {
                println!("{}", json!({"ok": false, "error": format!("{e:#}")}));
            } else {
                println!("FAILED: {e:#}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    record_gate(&args.data_dir, &r)?;
    let dir = args.data_dir.display();
    if args.json {
        println!(
            "{}",
            json!({"ok": true, "data_dir": dir.to_string(), "chain": r.chain, "origin": r.origin,
                   "size": r.size, "root": r.root, "key_pinned": r.key_pinned,
                   "signing_key_written": r.signing_key_written, "keyring_written": r.keyring_written})
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "OK: restored {} at size {} (root {}) into {dir} from {}, verified{}",
        r.origin,
        r.size,
        r.root,
        r.chain.join(" + "),
        if r.key_pinned {
            ""
        } else {
            " [key not pinned: pass --vkey]"
        }
    );
    if r.keyring_written {
        println!("  wrote {dir}/keyring (the encryption keyring from the backup)");
    }
    if r.signing_key_written {
        println!("  wrote {dir}/log.key (mode 0600) from --signing-key");
    } else {
        println!(
            "  next: copy the log's signing key to {dir}/log.key (mode 0600) before `aiaudit serve`; \
             without it serve would create a new key, a new log identity"
        );
    }
    println!(
        "  also not in backups, restore them from where you keep them apart: the encryption master key, \
         tokens (tokens.json; a new admin.token is created on first start), registered emitters (emitters.json)"
    );
    Ok(ExitCode::SUCCESS)
}

fn kind_name(k: aiaudit_backup::Kind) -> &'static str {
    match k {
        aiaudit_backup::Kind::Full => "full",
        aiaudit_backup::Kind::Incremental => "incremental",
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The ledger's read API (`aiaudit-client`) as a backup source. Its calls
/// block, so each runs on a blocking thread (bundles are still fetched side
/// by side); it is made and dropped outside the async runtime.
struct HttpSource {
    client: std::sync::Arc<aiaudit_client::Client>,
}

impl HttpSource {
    fn new(url: &str, token: Option<&str>) -> anyhow::Result<HttpSource> {
        Ok(HttpSource {
            client: std::sync::Arc::new(crate::ledger_client(url, token)?),
        })
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&aiaudit_client::Client) -> aiaudit_client::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let client = self.client.clone();
        Ok(tokio::task::spawn_blocking(move || f(&client)).await??)
    }
}

impl LogSource for HttpSource {
    async fn checkpoint(&self) -> anyhow::Result<String> {
        self.call(|c| c.checkpoint_note()).await
    }

    async fn verifier_key(&self) -> anyhow::Result<Option<String>> {
        let info = self.call(|c| c.info()).await?;
        Ok(info["verifier_key"].as_str().map(str::to_string))
    }

    async fn entry_bundle(&self, index: u64, width: u16) -> anyhow::Result<Vec<u8>> {
        let tile = Tile {
            kind: TileKind::Entries,
            index,
            width,
        };
        self.call(move |c| c.tile(&tile)).await
    }

    async fn blob(&self, id: &aiaudit_tlog::Hash) -> anyhow::Result<Vec<u8>> {
        let name: String = id.iter().map(|b| format!("{b:02x}")).collect();
        self.call(move |c| c.stored_blob(&name)).await
    }

    async fn keyring_len(&self) -> anyhow::Result<Option<u64>> {
        // Only ledgers with encryption at rest serve it; 404 means there is none.
        let first = self.call(|c| c.keyring_range(0, 1)).await?;
        Ok(first.map(|(_, total)| total))
    }

    async fn keyring_range(&self, offset: u64, len: u64) -> anyhow::Result<Vec<u8>> {
        let (bytes, _) = self
            .call(move |c| c.keyring_range(offset, len))
            .await?
            .context("the ledger no longer serves its keyring")?;
        if bytes.len() as u64 != len {
            anyhow::bail!(
                "the ledger sent {} bytes of the keyring from {offset}, not {len}",
                bytes.len()
            );
        }
        Ok(bytes)
    }
}

/// A progress bar on stderr (drawn only on a terminal), one per phase.
struct Bar {
    hidden: bool,
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

impl Bar {
    fn new(hidden: bool) -> Bar {
        Bar {
            hidden,
            bar: Mutex::new(None),
        }
    }
}

impl Progress for Bar {
    fn begin(&self, what: &str, total: u64) {
        let bar = if self.hidden {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(total)
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{what} {{bar:40}} {{pos}}/{{len}} entries ({{per_sec}}, {{eta}} left)"
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        if let Some(old) = self.bar.lock().unwrap().replace(bar) {
            old.finish_and_clear();
        }
    }

    fn advance(&self, n: u64) {
        if let Some(b) = self.bar.lock().unwrap().as_ref() {
            b.inc(n);
        }
    }

    fn end(&self) {
        if let Some(b) = self.bar.lock().unwrap().take() {
            b.finish_and_clear();
        }
    }
}

/// Backups do not carry the entry-format gate file: a restored log whose
/// entries use the openings dictionary records gate 5 at once, so that no
/// build without the dictionary serves it (otherwise the ledger would
/// guess the gate from the last entry alone at its first start).
pub(crate) fn record_gate(
    data_dir: &std::path::Path,
    r: &aiaudit_backup::RestoreReport,
) -> anyhow::Result<()> {
    use aiaudit_ledger::entry_format::{raise_gate, Home, DICTIONARY};
    if r.openings_dictionary {
        raise_gate(Home::Dir(data_dir), DICTIONARY).context("recording the entry-format gate")?;
    }
    Ok(())
}
