//! `aiaudit verify`: a full audit of a log, online (`--url`) or offline
//! (`--data-dir`). Every tile and entry up to the checkpoint is recomputed;
//! nothing the log serves is trusted on its word. With `--bundle`, an
//! export bundle is checked instead, fully offline.

use aiaudit_event::sealed_v3::BlobRef;
use aiaudit_store::LogReader;
use aiaudit_tlog::{audit_log, open_note, Checkpoint, Hash, Tile, TileKind, TileReader, Verifier};
use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::Args;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Base URL of a running ledger, e.g. http://127.0.0.1:7381
    #[arg(
        long,
        required_unless_present_any = ["data_dir", "bundle", "proof"],
        conflicts_with_all = ["data_dir", "bundle", "proof"]
    )]
    url: Option<String>,
    /// Bearer token (an auditor or admin token of every tenant: entry bundles mix tenants).
    #[arg(long, env = "AIAUDIT_TOKEN")]
    token: Option<String>,
    /// A data directory to audit offline (read-only).
    #[arg(long, conflicts_with = "bundle")]
    data_dir: Option<PathBuf>,
    /// An export bundle (`aiaudit export`) to check offline: its manifest, checkpoint,
    /// every inclusion proof, opening and emitter signature. `-` reads standard input.
    #[arg(long, conflicts_with = "checkpoint_file")]
    bundle: Option<PathBuf>,
    /// The log's verifier key (`<name>+<hex id>+<base64 key>`, or a file holding it).
    /// Without it the key is taken from the log itself, which proves nothing against its operator.
    #[arg(long)]
    vkey: Option<String>,
    /// A checkpoint saved by an earlier run: the log must be consistent with it.
    /// The newly verified checkpoint is written there afterwards.
    #[arg(long)]
    checkpoint_file: Option<PathBuf>,
    /// With --data-dir: where the log keeps its blobs, when not in the data
    /// directory (`s3://bucket/prefix`, as `serve --blob-store`).
    #[arg(long, requires = "data_dir", env = "AIAUDIT_BLOB_STORE")]
    blob_store: Option<String>,
    /// A C2SP tlog-policy file: the checkpoint must be signed by one of its
    /// log keys and cosigned by its quorum of witnesses (docs/witnesses.md).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// A C2SP tlog-proof (`aiaudit proof`) to check offline against --policy:
    /// the entry it carries is in the checkpoint, which the quorum cosigned.
    #[arg(long, requires = "policy", conflicts_with_all = ["data_dir", "bundle", "checkpoint_file"])]
    proof: Option<PathBuf>,
    /// Print one JSON object instead of one line.
    #[arg(long)]
    json: bool,
}

/// A data directory's tiles, noting on the way the blobs each entry lists
/// (checked after the audit, so entries are read once).
struct DirTiles(
    std::sync::Arc<LogReader>,
    std::sync::Arc<std::sync::Mutex<Vec<(u64, BlobRef)>>>,
);

impl DirTiles {
    fn read(log: &LogReader, tile: &Tile) -> aiaudit_tlog::Result<Vec<u8>> {
        let start = tile.index * aiaudit_tlog::TILE_WIDTH;
        let count = tile.width as u64;
        let r = match tile.kind {
            TileKind::Entries => log.read_entry_bundle(start, count),
            TileKind::Hash { level } => {
                log.read_hashes(level as u32 * aiaudit_tlog::TILE_HEIGHT, start, count)
            }
        };
        r.map_err(|e| aiaudit_tlog::Error::Read(Box::new(e)))
    }
}

impl TileReader for DirTiles {
    fn read_tile(&mut self, tile: &Tile) -> aiaudit_tlog::Result<Vec<u8>> {
        DirTiles::read(&self.0, tile)
    }

    /// The files are read with positioned reads, from any thread: the cores
    /// that hash the entries read them (docs/performance.md, "`aiaudit
    /// verify` on every core").
    fn bundle_reader(&self) -> Option<aiaudit_tlog::BundleReader> {
        let log = self.0.clone();
        Some(std::sync::Arc::new(move |tile| DirTiles::read(&log, tile)))
    }

    /// The blobs each entry lists, noted on the cores that hash the entries
    /// (on the reading thread they were a third of its time, and it is the
    /// one thread the audit cannot spread).
    fn entry_visitor(&self) -> Option<aiaudit_tlog::EntryVisitor> {
        let refs = self.1.clone();
        Some(std::sync::Arc::new(move |index, entry| {
            let found = aiaudit_event::sealed_v3::blob_refs(entry);
            if !found.is_empty() {
                let mut refs = refs.lock().expect("blob refs");
                refs.extend(found.into_iter().map(|r| (index, r)));
            }
        }))
    }
}

pub(crate) fn load_vkey(arg: &str) -> anyhow::Result<Verifier> {
    let text = if Path::new(arg).is_file() {
        std::fs::read_to_string(arg).with_context(|| format!("reading {arg}"))?
    } else {
        arg.to_string()
    };
    Verifier::parse(text.trim()).with_context(|| format!("verifier key {:?}", text.trim()))
}

/// What a full audit found.
pub(crate) struct Verified {
    checkpoint: Option<Checkpoint>,
    audit: aiaudit_tlog::AuditReport,
    problems: Vec<(Option<u64>, String)>,
    pinned: bool,
    consistent_with: Option<u64>,
    blobs: Option<BlobAudit>,
    /// With --policy: the witnesses that cosigned the checkpoint.
    witnesses: Option<std::collections::BTreeMap<String, u64>>,
}

/// What checking a data directory's blobs found (problems go to `problems`).
#[derive(Default)]
struct BlobAudit {
    checked: u64,
    bytes: u64,
    /// Blobs no entry lists: written for events that were never logged (a
    /// crash between a blob and its entry, a refused batch). Not corruption.
    orphans: u64,
}

impl Verified {
    pub(crate) fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The `--json` report.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let ok = self.ok();
        let cp = self.checkpoint.as_ref();
        json!({
            "ok": ok,
            "origin": cp.map(|c| c.origin.clone()),
            "size": cp.map(|c| c.size),
            "root": cp.map(|c| B64.encode::<&Hash>(&c.root)),
            "entries_checked": self.audit.entries_checked,
            "tiles_checked": self.audit.tiles_checked,
            "consistent_with_size": if ok { self.consistent_with } else { None },
            "key_pinned": self.pinned,
            "cosigned_by": self.witnesses,
            "blobs": self.blobs.as_ref().map(|b| json!({"checked": b.checked, "bytes": b.bytes, "orphans": b.orphans})),
            "problems": self.problems.iter().map(|(i, w)| json!({"index": i, "what": w})).collect::<Vec<_>>(),
        })
    }
}

impl VerifyArgs {
    /// A full audit of the ledger at `url` (DR drills audit what they restored).
    pub(crate) fn of_url(url: &str, token: Option<&str>, vkey: Option<&Verifier>) -> VerifyArgs {
        VerifyArgs {
            url: Some(url.to_string()),
            token: token.map(str::to_string),
            data_dir: None,
            bundle: None,
            vkey: vkey.map(Verifier::to_vkey),
            checkpoint_file: None,
            blob_store: None,
            policy: None,
            proof: None,
            json: true,
        }
    }

    /// A full audit of a data directory, offline.
    pub(crate) fn of_dir(dir: &Path, vkey: Option<&Verifier>) -> VerifyArgs {
        VerifyArgs {
            url: None,
            token: None,
            data_dir: Some(dir.to_path_buf()),
            bundle: None,
            vkey: vkey.map(Verifier::to_vkey),
            checkpoint_file: None,
            blob_store: None,
            policy: None,
            proof: None,
            json: true,
        }
    }
}

fn load_policy(path: &Path) -> anyhow::Result<aiaudit_tlog::Policy> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the policy {}", path.display()))?;
    aiaudit_tlog::Policy::parse(&text).with_context(|| format!("policy {}", path.display()))
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.proof {
        return run_proof(&args, path);
    }
    if let Some(path) = &args.bundle {
        return run_bundle(&args, path);
    }
    let verified = audit(&args)?;
    report(&args, &verified)
}

/// Audits the log `args` name: every tile and entry up to its checkpoint,
/// and consistency with the saved checkpoint, if any (updated when all is well).
pub(crate) fn audit(args: &VerifyArgs) -> anyhow::Result<Verified> {
    let refs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (note, default_vkey, mut reader): (String, Option<String>, Box<dyn TileReader>) =
        if let Some(url) = &args.url {
            let client = crate::ledger_client(url, args.token.as_deref())?;
            let note = client.checkpoint_note()?;
            let vkey = match &args.vkey {
                None => Some(client.announced_key()?.to_vkey()),
                Some(_) => None,
            };
            (note, vkey, Box::new(client))
        } else {
            let dir = args.data_dir.clone().expect("clap requires one");
            let log = LogReader::open(&dir)
                .with_context(|| format!("opening {} read-only", dir.display()))?;
            let note = log
                .checkpoint()?
                .with_context(|| format!("{} holds no checkpoint", dir.display()))?;
            let vkey = std::fs::read_to_string(dir.join("log.vkey")).ok();
            (note, vkey, Box::new(DirTiles(log.into(), refs.clone())))
        };
    let policy = args.policy.as_deref().map(load_policy).transpose()?;
    let pinned = args.vkey.is_some() || policy.is_some();
    let default_vkey = match (&policy, default_vkey) {
        // The policy's log key is the pinned one.
        (Some(p), _) if args.vkey.is_none() => p.logs().next().map(Verifier::to_vkey),
        (_, d) => d,
    };
    let verifier = match (&args.vkey, default_vkey) {
        (Some(k), _) => load_vkey(k)?,
        (None, Some(k)) => Verifier::parse(k.trim()).context("the log's own verifier key")?,
        (None, None) => bail!("no verifier key: pass --vkey"),
    };

    let mut problems: Vec<(Option<u64>, String)> = Vec::new();
    let mut blobs = None;
    let mut witnesses = None;
    if let Some(p) = &policy {
        match p.verify_checkpoint(&note) {
            Ok(check) => witnesses = Some(check.cosigned),
            Err(e) => problems.push((None, format!("witness policy: {e}"))),
        }
    }
    let body = match open_note(&note, &verifier) {
        Ok(b) => b,
        Err(e) => {
            return Ok(Verified {
                checkpoint: None,
                audit: Default::default(),
                problems: vec![(None, format!("checkpoint signature: {e}"))],
                pinned,
                consistent_with: None,
                blobs: None,
                witnesses: None,
            });
        }
    };
    let checkpoint = Checkpoint::parse_body(body).context("checkpoint body")?;
    if checkpoint.origin != verifier.name() {
        problems.push((
            None,
            format!(
                "checkpoint origin {:?} differs from the key name {:?}",
                checkpoint.origin,
                verifier.name()
            ),
        ));
    }

    let old = match &args.checkpoint_file {
        Some(path) if path.exists() => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let body = open_note(&text, &verifier)
                .with_context(|| format!("{}: signature", path.display()))?;
            Some(Checkpoint::parse_body(body).with_context(|| path.display().to_string())?)
        }
        _ => None,
    };
    if let Some(old) = &old {
        if old.origin != checkpoint.origin {
            problems.push((
                None,
                format!("saved checkpoint is for another log ({:?})", old.origin),
            ));
        } else if old.size > checkpoint.size {
            problems.push((
                Some(checkpoint.size),
                format!(
                    "the log shrank: a saved checkpoint covers {} entries, the log now {}",
                    old.size, checkpoint.size
                ),
            ));
        }
    }
    let old_arg = old
        .as_ref()
        .filter(|o| o.size > 0 && o.size <= checkpoint.size && o.origin == checkpoint.origin)
        .map(|o| (o.size, o.root));
    // A progress bar on a terminal (hidden when stderr is not one, or with --json).
    let bar = if args.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(checkpoint.size)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "verifying {bar:40} {pos}/{len} entries ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let audit = audit_log(
        checkpoint.size,
        &checkpoint.root,
        &mut reader,
        old_arg,
        |done| bar.set_position(done),
    );
    bar.finish_and_clear();
    for p in &audit.problems {
        problems.push((Some(p.index), p.what.clone()));
    }
    if let Some(dir) = &args.data_dir {
        // Tiles cover tree levels 0, 8, 16…; the levels between are stored
        // too (proofs are computed from them), so check every one.
        let log = LogReader::open(dir)?;
        let found = aiaudit_tlog::check_stored_levels(checkpoint.size, |level, start, count| {
            log.read_hashes(level, start, count)
        });
        problems.extend(
            found
                .into_iter()
                .map(|p| (Some(p.index), format!("log/levels: {}", p.what))),
        );
        let mut refs = std::mem::take(&mut *refs.lock().expect("blob refs"));
        // A bundle read twice (the audit re-reads around problems) lists its blobs twice.
        refs.sort_by_key(|(i, r)| (*i, r.commitment));
        refs.dedup_by_key(|(i, r)| (*i, r.commitment));
        let place = match &args.blob_store {
            Some(spec) => BlobPlace::Object(aiaudit_store::ObjectBlobs::open(spec)?),
            None => BlobPlace::Dir(&log),
        };
        blobs = Some(check_blobs(&place, &refs, &mut problems)?);
    }
    if audit.old_root_ok == Some(false) {
        problems.push((
            old.as_ref().map(|o| o.size),
            "the log is not consistent with the saved checkpoint (history was rewritten)".into(),
        ));
    }
    let consistent_with = old.as_ref().map(|o| o.size);
    if problems.is_empty() {
        if let Some(path) = &args.checkpoint_file {
            write_file_atomically(path, note.as_bytes())
                .with_context(|| format!("saving the checkpoint to {}", path.display()))?;
        }
    }
    Ok(Verified {
        checkpoint: Some(checkpoint),
        audit,
        problems,
        pinned,
        consistent_with,
        blobs,
        witnesses,
    })
}

/// Where the audited log keeps its blobs.
enum BlobPlace<'a> {
    Dir(&'a LogReader),
    Object(aiaudit_store::ObjectBlobs),
}

impl BlobPlace<'_> {
    fn blob_len(&self, id: &Hash) -> aiaudit_store::Result<Option<u64>> {
        match self {
            BlobPlace::Dir(l) => l.blob_len(id),
            BlobPlace::Object(o) => o.blob_len(id),
        }
    }
    fn read_blob(&self, id: &Hash, offset: u64, len: usize) -> aiaudit_store::Result<Vec<u8>> {
        match self {
            BlobPlace::Dir(l) => l.read_blob(id, offset, len),
            BlobPlace::Object(o) => o.read_blob(id, offset, len),
        }
    }
    fn list_blobs(
        &self,
        each: &mut dyn FnMut(Hash, u64) -> aiaudit_store::Result<()>,
    ) -> aiaudit_store::Result<()> {
        match self {
            BlobPlace::Dir(l) => l.list_blobs(each),
            BlobPlace::Object(o) => o.list_blobs(each),
        }
    }
}

/// Checks every blob the audited entries list, with no key: present, and
/// its stored bytes hashing to what the entry logs. Blobs no entry lists
/// are counted as orphans, not problems.
fn check_blobs(
    log: &BlobPlace<'_>,
    refs: &[(u64, BlobRef)],
    problems: &mut Vec<(Option<u64>, String)>,
) -> anyhow::Result<BlobAudit> {
    let mut audit = BlobAudit::default();
    let mut listed = std::collections::HashSet::new();
    for (index, r) in refs {
        listed.insert(r.commitment);
        let name = aiaudit_store::blob_name(&r.commitment);
        let len = match log.blob_len(&r.commitment) {
            Ok(Some(n)) => n,
            Ok(None) => {
                problems.push((
                    Some(*index),
                    format!("blob {name} (at {}) is missing", r.pointer),
                ));
                continue;
            }
            Err(e) => {
                problems.push((Some(*index), format!("blob {name}: {e}")));
                continue;
            }
        };
        let source = |offset: u64, n: usize| -> Result<Vec<u8>, String> {
            log.read_blob(&r.commitment, offset, n)
                .map_err(|e| e.to_string())
        };
        match aiaudit_event::blob::stored_hash(&source, len) {
            Ok(h) if h == r.stored => {
                audit.checked += 1;
                audit.bytes += len;
            }
            Ok(_) => problems.push((
                Some(*index),
                format!(
                    "blob {name} (at {}) is not the bytes its entry logs",
                    r.pointer
                ),
            )),
            Err(e) => problems.push((Some(*index), format!("blob {name}: {e}"))),
        }
    }
    log.list_blobs(&mut |id, _| {
        if !listed.contains(&id) {
            audit.orphans += 1;
        }
        Ok(())
    })?;
    Ok(audit)
}

fn report(args: &VerifyArgs, v: &Verified) -> anyhow::Result<ExitCode> {
    let ok = v.ok();
    let (checkpoint, audit, problems, pinned, consistent_with) = (
        v.checkpoint.as_ref(),
        &v.audit,
        &v.problems,
        v.pinned,
        v.consistent_with,
    );
    let root = checkpoint.map(|c| B64.encode::<&Hash>(&c.root));
    if args.json {
        println!("{}", v.to_json());
    } else if ok {
        let c = checkpoint.expect("ok implies a checkpoint");
        let consistency = match consistent_with {
            Some(s) => format!(", consistent with the saved checkpoint at size {s}"),
            None => String::new(),
        };
        let blobs = match &v.blobs {
            Some(b) if b.checked > 0 || b.orphans > 0 => {
                let orphans = if b.orphans > 0 {
                    format!(
                        "; {} orphan blob(s) no entry lists (left by interrupted or refused writes, not corruption)",
                        b.orphans
                    )
                } else {
                    String::new()
                };
                format!(", {} blobs ({} bytes){orphans}", b.checked, b.bytes)
            }
            _ => String::new(),
        };
        if let Some(w) = &v.witnesses {
            let names: Vec<&str> = w.keys().map(String::as_str).collect();
            println!(
                "  witness policy met: cosigned by {}",
                if names.is_empty() {
                    "none (the policy needs none)".to_string()
                } else {
                    names.join(", ")
                }
            );
        }
        println!(
            "OK: {} verified at size {} (root {}): {} entries, {} tiles{blobs}{}{}",
            c.origin,
            c.size,
            root.unwrap_or_default(),
            audit.entries_checked,
            audit.tiles_checked,
            consistency,
            if pinned {
                ""
            } else {
                " [key not pinned: pass --vkey]"
            }
        );
    } else {
        let (index, what) = &problems[0];
        let at = index.map(|i| format!(" at index {i}")).unwrap_or_default();
        println!("FAILED: {} problem(s); first{at}: {what}", problems.len());
        for (index, what) in problems.iter().skip(1).take(20) {
            let at = index.map(|i| format!("index {i}: ")).unwrap_or_default();
            eprintln!("  {at}{what}");
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn write_file_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// `--bundle`: checks an export bundle offline and prints the result.
fn run_bundle(args: &VerifyArgs, path: &Path) -> anyhow::Result<ExitCode> {
    let trusted = args.vkey.as_deref().map(load_vkey).transpose()?;
    let trusted = trusted.map(|v| v.to_vkey());
    let input: Box<dyn std::io::Read> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(path)
            .with_context(|| format!("opening the bundle {}", path.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    let policy = args.policy.as_deref().map(load_policy).transpose()?;
    let trusted = match (&policy, trusted) {
        (Some(p), None) => p.logs().next().map(Verifier::to_vkey),
        (_, t) => t,
    };
    let mut result = aiaudit_bundle::verify_bundle(input, trusted.as_deref());
    if let (Some(p), Ok(r)) = (&policy, &result) {
        if let Err(e) = p.verify_checkpoint(&r.checkpoint_note) {
            result = Err(aiaudit_bundle::BundleError {
                problems: vec![aiaudit_bundle::Problem {
                    file: "checkpoint".into(),
                    index: None,
                    what: format!("witness policy: {e}"),
                }],
                more: 0,
            });
        }
    }
    let shown = path.display();
    match (&result, args.json) {
        (Ok(r), true) => {
            let mut out = serde_json::to_value(r)?;
            out["ok"] = json!(true);
            out["bundle"] = json!(shown.to_string());
            println!("{out}");
        }
        (Err(e), true) => {
            let out = json!({"ok": false, "bundle": shown.to_string(),
                             "problems": e.problems, "more_problems": e.more});
            println!("{out}");
        }
        (Ok(r), false) => {
            println!(
                "OK: {shown}: {} event(s) proven in {} at size {} (root {})",
                r.events, r.origin, r.checkpoint_size, r.checkpoint_root
            );
            println!(
                "  {} plain, {} sealed with content, {} sealed without content (erased or not exported)",
                r.plain, r.sealed_with_content, r.sealed_without_content
            );
            if r.blobs > 0 {
                println!(
                    "  {} blob(s) of large content ({} bytes) checked against their commitments",
                    r.blobs, r.blob_bytes
                );
            }
            for (key, n) in &r.emitters {
                println!("  {n} emitter signature(s) verified by {key}");
            }
            println!("  exported {} for the query {}", r.created, r.filters);
            for w in &r.warnings {
                println!("warning: {w}");
            }
        }
        (Err(e), false) => {
            let total = e.problems.len() as u64 + e.more;
            println!(
                "FAILED: {shown}: {total} problem(s); first: {}",
                e.problems
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            );
            for p in e.problems.iter().skip(1) {
                eprintln!("  {p}");
            }
            if e.more > 0 {
                eprintln!("  … and {} more", e.more);
            }
        }
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `aiaudit verify --proof FILE --policy FILE`: one event's C2SP tlog-proof,
/// offline: the checkpoint is signed by a log key of the policy and
/// cosigned by its quorum, and the entry the proof carries is in that tree.
fn run_proof(args: &VerifyArgs, path: &Path) -> anyhow::Result<ExitCode> {
    let policy = load_policy(args.policy.as_deref().expect("clap requires --policy"))?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the proof {}", path.display()))?;
    let outcome = aiaudit_client::verify_tlog_proof(&text, &policy).map(|p| {
        let id = aiaudit_event::envelope::decode_stored(&p.entry)
            .ok()
            .and_then(|s| {
                s.index
                    .get("id")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            });
        (p.check, p.index, id)
    });
    match outcome {
        Ok((check, index, id)) => {
            let names: Vec<&str> = check.cosigned.keys().map(String::as_str).collect();
            if args.json {
                println!(
                    "{}",
                    json!({"ok": true, "index": index, "event_id": id, "origin": check.checkpoint.origin,
                           "size": check.checkpoint.size, "root": B64.encode(check.checkpoint.root),
                           "log_key": check.log, "cosigned_by": check.cosigned})
                );
            } else {
                println!(
                    "OK: event {}at index {index} is in {} at size {} (root {}), cosigned by {}",
                    id.map(|i| format!("{i} ")).unwrap_or_default(),
                    check.checkpoint.origin,
                    check.checkpoint.size,
                    B64.encode(check.checkpoint.root),
                    if names.is_empty() {
                        "no witness (the policy needs none)".to_string()
                    } else {
                        names.join(", ")
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if args.json {
                println!("{}", json!({"ok": false, "problems": [e.to_string()]}));
            } else {
                println!("FAILED: {}: {e}", path.display());
            }
            Ok(ExitCode::from(1))
        }
    }
}
