//! `aiaudit validate`: one report for before and after a deployment. Each
//! check is ok, warn or fail; any failure makes the exit code 1.

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// The config file `serve` runs with (the environment applies too, as for serve).
    #[arg(long, env = "AIAUDIT_CONFIG")]
    config: Option<PathBuf>,
    /// The data directory to check (keys, modes, disk), as serve's
    /// --data-dir. With --url and neither this nor --config, only the
    /// ledger at --url is checked.
    #[arg(long, env = "AIAUDIT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The running ledger, for health, metrics, checkpoint, backups and clock checks.
    #[arg(long)]
    url: Option<String>,
    /// A token for /v1/info: any when public reads are off; an admin token of
    /// every tenant to see the backups.
    #[arg(long, env = "AIAUDIT_TOKEN")]
    token: Option<String>,
    /// A checkpoint saved by an earlier run: the live one must be consistent with it (it is then updated).
    #[arg(long)]
    checkpoint_file: Option<PathBuf>,
    /// The log's verifier key (a vkey, or a file holding one) the checkpoint
    /// must be signed by. Default: the data directory's log.vkey, else what
    /// the ledger announces at /v1/info (which a wrong server would fake).
    #[arg(long)]
    verifier_key: Option<String>,
    /// Performance smoke test: this many rounds of reads (checkpoint, info,
    /// a consistency proof, a tile); 0 skips it.
    #[arg(long, default_value_t = 20)]
    smoke_requests: u32,
    /// The smoke test fails when its p95 latency exceeds this, in ms (the
    /// seed's scale-up trigger).
    #[arg(long, default_value_t = 400)]
    smoke_max_p95_ms: u64,
    /// Rotation policy: the master key's longest life, e.g. 365d.
    #[arg(long, default_value = "365d")]
    master_key_max_age: String,
    /// Free space the data directory's disk must keep (fail below it): bytes
    /// or with a unit, e.g. 2GiB, 500MiB. Under 10 % of the disk is a warning.
    #[arg(long, default_value = "2GiB", value_parser = parse_size)]
    min_free_disk: u64,
    /// JSON report on stdout.
    #[arg(long)]
    json: bool,
}

/// `1234`, `64KiB`, `500MiB`, `2GiB`, `1TiB` (binary units; KB/MB/GB/TB are decimal).
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: a size is a whole number with an optional unit, e.g. 2GiB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "{other:?}: unknown unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            ))
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{s:?}: too large"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Report(Vec<(String, Level, String)>);

impl Report {
    fn add(&mut self, name: &str, level: Level, detail: impl Into<String>) {
        self.0.push((name.to_string(), level, detail.into()));
    }
}

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let mut r = Report(Vec::new());
    // Only the ledger at --url: this machine's serve settings (data
    // directory, keys, disk, TLS files) are another machine's business.
    let remote_only = args.config.is_none() && args.data_dir.is_none() && args.url.is_some();
    let config = match crate::serve::load_config(args.config.as_deref(), args.data_dir.as_deref()) {
        _ if remote_only => {
            r.add(
                "configuration",
                Level::Ok,
                "no --config: checking the ledger at --url",
            );
            None
        }
        Ok(c) => {
            r.add("configuration", Level::Ok, "parses; every option known");
            Some(c)
        }
        Err(e) => {
            r.add("configuration", Level::Fail, format!("{e:#}"));
            None
        }
    };
    if let Some(c) = &config {
        check_files(&mut r, c, &args);
        check_disk(&mut r, &c.data_dir, args.min_free_disk);
        check_tls(&mut r, c);
        if let Some(url) = &c.storage {
            check_storage(&mut r, c, url);
        }
    }
    if let Some(url) = &args.url {
        check_live(&mut r, url, &args, config.as_ref())?;
    } else {
        r.add(
            "live checks",
            Level::Warn,
            "no --url: health, metrics, checkpoint, backups and clock not checked",
        );
    }
    let worst = r.0.iter().map(|c| c.1).max().unwrap_or(Level::Ok);
    if args.json {
        let checks: Vec<Value> =
            r.0.iter()
                .map(|(n, l, d)| json!({"check": n, "status": name(*l), "detail": d}))
                .collect();
        println!(
            "{}",
            json!({"ok": worst != Level::Fail, "status": name(worst), "checks": checks})
        );
    } else {
        for (n, l, d) in &r.0 {
            println!("{:<5} {n}: {d}", name(*l).to_uppercase());
        }
        println!("validate: {}", name(worst).to_uppercase());
    }
    Ok(if worst == Level::Fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn name(l: Level) -> &'static str {
    match l {
        Level::Ok => "ok",
        Level::Warn => "warn",
        Level::Fail => "fail",
    }
}

fn age(path: &Path) -> Option<Duration> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    SystemTime::now().duration_since(m).ok()
}

/// Key and secret files: present, not readable by others; master key age.
fn check_files(r: &mut Report, c: &aiaudit_ledger::LedgerConfig, args: &ValidateArgs) {
    let d = &c.data_dir;
    if !d.exists() {
        r.add(
            "data directory",
            Level::Warn,
            format!(
                "{} does not exist yet: a first start creates it and its keys",
                d.display()
            ),
        );
        return;
    }
    let master = if std::env::var("AIAUDIT_MASTER_KEY").is_ok_and(|v| !v.is_empty()) {
        None
    } else {
        Some(
            c.master_key_file
                .clone()
                .unwrap_or_else(|| d.join("master.key")),
        )
    };
    let mut files = vec![
        (
            "signing key",
            d.join("log.key"),
            std::env::var(aiaudit_ledger::keys::LOG_KEY_ENV).is_err(),
        ),
        ("keyring", d.join("keyring"), false),
        ("token registry", d.join("tokens.json"), false),
        ("admin token", d.join("admin.token"), false),
    ];
    if let Some(m) = &master {
        files.push(("master key", m.clone(), c.encryption));
    }
    for (what, path, required) in files {
        match std::fs::metadata(&path) {
            Err(_) if required => {
                r.add(what, Level::Fail, format!("{} is missing", path.display()))
            }
            Err(_) => r.add(
                what,
                Level::Ok,
                format!("{} not present (created when needed)", path.display()),
            ),
            Ok(m) if m.permissions().mode() & 0o077 != 0 => r.add(
                what,
                Level::Fail,
                format!(
                    "{} is readable by others (mode {:o}): chmod 600",
                    path.display(),
                    m.permissions().mode() & 0o777
                ),
            ),
            Ok(_) => r.add(
                what,
                Level::Ok,
                format!("{} present, mode 0600", path.display()),
            ),
        }
    }
    match &master {
        None => r.add("master key location", Level::Ok, "from AIAUDIT_MASTER_KEY"),
        Some(m) if m.starts_with(d) => r.add(
            "master key location",
            Level::Warn,
            format!("{} is inside the data directory: a stolen disk or copy holds the key with the data (docs/security.md)", m.display()),
        ),
        Some(m) => r.add("master key location", Level::Ok, format!("{} is apart from the data", m.display())),
    }
    if let (Some(m), Some(max)) = (
        &master,
        aiaudit_ledger::auth::parse_duration_secs(&args.master_key_max_age),
    ) {
        if let Some(a) = age(m) {
            let days = a.as_secs() / 86_400;
            if a.as_secs() > max {
                r.add(
                    "master key age",
                    Level::Warn,
                    format!(
                        "{days} days old, beyond the {} policy: aiaudit keys rotate-master",
                        args.master_key_max_age
                    ),
                );
            } else {
                r.add(
                    "master key age",
                    Level::Ok,
                    format!("{days} days old (policy {})", args.master_key_max_age),
                );
            }
        }
    }
}

/// The shared PostgreSQL log answers, with a schema this build knows, over
/// TLS unless it is on loopback; read-only (nothing is migrated).
fn check_storage(r: &mut Report, c: &aiaudit_ledger::LedgerConfig, url: &str) {
    let p = match aiaudit_store::probe(url, c.storage_ca.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            r.add("postgresql", Level::Fail, format!("{e}"));
            return;
        }
    };
    r.add(
        "postgresql",
        Level::Ok,
        format!(
            "PostgreSQL {} answers; {} entries, {} keyring records",
            p.server_version, p.size, p.keyring_records
        ),
    );
    let known = aiaudit_store::PG_SCHEMA_VERSION;
    match p.schema {
        0 => r.add(
            "postgresql schema",
            Level::Warn,
            "not created yet: the first node to start creates it",
        ),
        v if v > known => r.add(
            "postgresql schema",
            Level::Fail,
            format!("version {v}, newer than this build's {known}: upgrade aiaudit"),
        ),
        v if v < known => r.add(
            "postgresql schema",
            Level::Ok,
            format!("version {v}; the next start migrates it to {known}"),
        ),
        v => r.add("postgresql schema", Level::Ok, format!("version {v}")),
    }
    let loopback = url.contains("@127.0.0.1")
        || url.contains("@localhost")
        || url.contains("@[::1]")
        || url.contains("://127.0.0.1")
        || url.contains("://localhost");
    match (p.tls, loopback) {
        (true, _) => r.add(
            "postgresql tls",
            Level::Ok,
            "encrypted, server certificate verified",
        ),
        (false, true) => r.add("postgresql tls", Level::Ok, "plain, on loopback"),
        (false, false) => r.add(
            "postgresql tls",
            Level::Warn,
            "plain over the network: add sslmode=require to the URL (docs/operations.md)",
        ),
    }
    if c.data_dir.join(aiaudit_keyring::KEYRING_FILE).exists() {
        r.add(
            "keyring",
            Level::Warn,
            "a keyring file is in the data directory: the next start moves it into the database, or refuses if it differs (docs/scaling.md)",
        );
    }
}

/// The data directory takes a write and an fsync, and has room to grow.
fn check_disk(r: &mut Report, dir: &Path, min_free: u64) {
    let probe_dir = if dir.exists() {
        dir.to_path_buf()
    } else {
        dir.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let probe = probe_dir.join(".validate-probe");
    let written = std::fs::File::create(&probe).and_then(|mut f| {
        use std::io::Write;
        f.write_all(&[0u8; 4096])?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    match written {
        Ok(()) => r.add(
            "data directory writable",
            Level::Ok,
            format!("{} takes writes and fsync", probe_dir.display()),
        ),
        Err(e) => r.add(
            "data directory writable",
            Level::Fail,
            format!("{}: {e}", probe_dir.display()),
        ),
    }
    if let Ok(fs) = rustix::fs::statvfs(&probe_dir) {
        let total = fs.f_blocks.saturating_mul(fs.f_frsize);
        let free = fs.f_bavail.saturating_mul(fs.f_frsize);
        let pct = if total > 0 {
            free as f64 * 100.0 / total as f64
        } else {
            0.0
        };
        let gib = free as f64 / (1u64 << 30) as f64;
        // An absolute floor, not a share: 3 % of a large disk is still many
        // gigabytes of room, while 3 % of a small one may be none.
        let level = if free < min_free {
            Level::Fail
        } else if pct < 10.0 {
            Level::Warn
        } else {
            Level::Ok
        };
        r.add(
            "disk space",
            level,
            format!(
                "{gib:.1} GiB free ({pct:.0} %), floor {:.1} GiB",
                min_free as f64 / (1u64 << 30) as f64
            ),
        );
    }
}

/// The TLS certificate parses, matches its key and is not about to expire.
fn check_tls(r: &mut Report, c: &aiaudit_ledger::LedgerConfig) {
    let (Some(cert), Some(key)) = (&c.tls_cert, &c.tls_key) else {
        r.add(
            "TLS",
            Level::Warn,
            "no TLS configured: put the ledger behind TLS (--tls-cert/--tls-key) outside loopback",
        );
        return;
    };
    if let Err(e) = aiaudit_server::tls::ReloadingCert::load(cert, key) {
        r.add("TLS", Level::Fail, format!("{e:#}"));
        return;
    }
    let pem = std::fs::read(cert).unwrap_or_default();
    let days = x509_parser::pem::parse_x509_pem(&pem)
        .ok()
        .and_then(|(_, p)| {
            p.parse_x509()
                .ok()
                .map(|c| c.validity().time_to_expiration())
        })
        .map(|left| left.map_or(-1, |d| d.whole_days()));
    match days {
        Some(d) if d < 0 => r.add(
            "TLS",
            Level::Fail,
            format!("{} has expired", cert.display()),
        ),
        Some(d) if d < 14 => r.add(
            "TLS",
            Level::Warn,
            format!("{} expires in {d} days", cert.display()),
        ),
        Some(d) => r.add(
            "TLS",
            Level::Ok,
            format!("{} valid for {d} more days", cert.display()),
        ),
        None => r.add(
            "TLS",
            Level::Warn,
            format!("{}: could not read its validity", cert.display()),
        ),
    }
}

fn check_live(
    r: &mut Report,
    url: &str,
    args: &ValidateArgs,
    config: Option<&aiaudit_ledger::LedgerConfig>,
) -> anyhow::Result<()> {
    let base = url.trim_end_matches('/');
    let client = crate::blocking_client(None)?;
    let get = |path: &str| {
        let mut req = client.get(format!("{base}{path}"));
        if let Some(t) = &args.token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    for path in ["/healthz", "/readyz"] {
        match get(path) {
            Ok(resp) if resp.status().is_success() => r.add(path, Level::Ok, "200"),
            Ok(resp) => {
                let status = resp.status();
                r.add(
                    path,
                    Level::Fail,
                    format!("{status}: {}", resp.text().unwrap_or_default()),
                )
            }
            Err(e) => r.add(path, Level::Fail, format!("unreachable: {e}")),
        }
    }
    let metrics = get("/metrics").and_then(|m| {
        let status = m.status();
        m.text().map(|t| (status, t))
    });
    match metrics {
        Ok((status, _)) if !status.is_success() => {
            r.add("/metrics", Level::Fail, format!("answered {status}"))
        }
        Ok((_, text)) if text.contains("aiaudit_tree_size") => {
            r.add("/metrics", Level::Ok, "Prometheus metrics served")
        }
        Ok(_) => r.add("/metrics", Level::Fail, "no aiaudit metrics in the answer"),
        Err(e) => r.add("/metrics", Level::Fail, format!("{e}")),
    }
    // Clock: the server's Date header against ours.
    if let Ok(resp) = get("/healthz") {
        let skew = resp
            .headers()
            .get("date")
            .and_then(|d| d.to_str().ok())
            .and_then(httpdate)
            .map(|server| {
                (time::OffsetDateTime::now_utc() - server)
                    .whole_seconds()
                    .abs()
            });
        match skew {
            Some(s) if s > 5 => r.add(
                "clock",
                Level::Warn,
                format!("this machine and the ledger differ by {s} s"),
            ),
            Some(s) => r.add("clock", Level::Ok, format!("within {s} s of the ledger")),
            None => r.add("clock", Level::Warn, "the ledger sent no Date header"),
        }
    }
    let info: Value = get("/v1/info")
        .and_then(|i| i.json())
        .unwrap_or(Value::Null);
    // The checkpoint: signed by the key we trust, consistent with the last one seen.
    let vkey_text = match &args.verifier_key {
        Some(k) if Path::new(k).is_file() => Some(
            std::fs::read_to_string(k).with_context(|| format!("reading --verifier-key {k}"))?,
        ),
        Some(k) => Some(k.clone()),
        None => config
            .and_then(|c| std::fs::read_to_string(c.data_dir.join("log.vkey")).ok())
            .or_else(|| info["verifier_key"].as_str().map(str::to_string)),
    };
    // An error answer is reported as such, not read as a malformed note.
    let note = get("/checkpoint").map(|c| match c.status() {
        s if s.is_success() => c.text().map_err(|e| e.to_string()),
        s => Err(format!("/checkpoint answered {s}")),
    });
    let note = match note {
        Ok(n) => n,
        Err(e) => Err(e.to_string()),
    };
    match (vkey_text, note) {
        (Some(vkey), Ok(note)) => match check_checkpoint(
            &client,
            base,
            vkey.trim(),
            &note,
            args.checkpoint_file.as_deref(),
        ) {
            Ok(detail) => r.add("checkpoint", Level::Ok, detail),
            Err(e) => r.add("checkpoint", Level::Fail, format!("{e:#}")),
        },
        (None, _) => r.add(
            "checkpoint",
            Level::Warn,
            "no verifier key known (no data dir, no /v1/info)",
        ),
        (_, Err(e)) => r.add("checkpoint", Level::Fail, e),
    }
    let (level, detail) = checkpoint_age(
        info["checkpoint_age_seconds"].as_f64().unwrap_or(0.0),
        info["sequenced_size"].as_u64().unwrap_or(0),
        info["size"].as_u64().unwrap_or(0),
    );
    r.add("checkpoint age", level, detail);
    check_security(r, &client, base, &info);
    check_settings(r, &info);
    if args.smoke_requests > 0 {
        check_smoke(r, &get, &info, args);
    }
    // Backups: fresh and verified, per location.
    let backup = &info["backup"];
    if backup.is_null() && !info.is_null() {
        r.add(
            "backups",
            Level::Warn,
            "the ledger shows backups to admins of every tenant only: give --token to check them",
        );
    } else if backup["scheduled"] != true {
        r.add(
            "backups",
            Level::Warn,
            "no backup schedule in serve (--backup-to); make sure backups are taken elsewhere",
        );
    } else {
        let max = backup["max_age_seconds"].as_u64().unwrap_or(0);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for loc in backup["locations"].as_array().into_iter().flatten() {
            let name = format!("backup {}", loc["location"].as_str().unwrap_or("?"));
            match (
                loc["last_success_unix"].as_u64(),
                loc["last_verified_unix"].as_u64(),
            ) {
                (Some(s), Some(_)) if now - s <= max => r.add(
                    &name,
                    Level::Ok,
                    format!("last good backup {} s ago, verified", now - s),
                ),
                (Some(s), _) => r.add(
                    &name,
                    Level::Fail,
                    format!(
                        "last good backup {} s ago (schedule allows {max} s)",
                        now - s
                    ),
                ),
                (None, _) => r.add(
                    &name,
                    Level::Fail,
                    format!(
                        "no good backup yet{}",
                        loc["last_error"]
                            .as_str()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    ),
                ),
            }
        }
    }
    Ok(())
}

/// What a stranger can do: nothing but the public reads. Probed, not read
/// from the settings, so a proxy in front that strips or adds
/// authentication is caught too.
fn check_security(r: &mut Report, client: &reqwest::blocking::Client, base: &str, info: &Value) {
    let anonymous = [
        (
            "append",
            client.post(format!("{base}/v1/events")).json(&json!([])),
        ),
        ("token list", client.get(format!("{base}/v1/tokens"))),
        ("search", client.get(format!("{base}/v1/events?limit=1"))),
    ];
    for (what, req) in anonymous {
        let name = format!("security: anonymous {what}");
        match req.send().map(|resp| resp.status()) {
            Ok(s) if s == 401 || s == 403 => r.add(&name, Level::Ok, format!("refused ({s})")),
            Ok(s) => r.add(&name, Level::Fail, format!("answered {s} without a token")),
            Err(e) => r.add(&name, Level::Fail, format!("unreachable: {e}")),
        }
    }
    let loopback = reqwest::Url::parse(base).ok().is_some_and(|u| {
        matches!(
            u.host_str(),
            Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
        )
    });
    if base.starts_with("https://") {
        r.add("security: transport", Level::Ok, "HTTPS");
    } else if loopback {
        r.add("security: transport", Level::Ok, "plain HTTP on loopback");
    } else {
        r.add(
            "security: transport",
            Level::Warn,
            "plain HTTP beyond loopback: tokens and events cross the network in clear (--tls-cert)",
        );
    }
    match info["encryption"].as_bool() {
        Some(true) => r.add(
            "security: content sealed at rest",
            Level::Ok,
            "encryption on",
        ),
        Some(false) => r.add(
            "security: content sealed at rest",
            Level::Warn,
            "encryption off: event content is stored in clear and cannot be crypto-shredded",
        ),
        None => {}
    }
}

/// Compliance settings and the entry format, from /v1/info (the settings
/// are shown to an admin of every tenant only).
fn check_settings(r: &mut Report, info: &Value) {
    match info["entry_format"].as_u64() {
        Some(5) => r.add(
            "entry format",
            Level::Ok,
            "writes format 5 (the upgrade is finalized: builds without the openings dictionary cannot serve the log)",
        ),
        Some(f @ (3 | 4)) => r.add(
            "entry format",
            Level::Ok,
            format!("writes format {f}: builds that write format {f} can still serve the log; `aiaudit upgrade finalize` moves it to format 5"),
        ),
        Some(f) => r.add(
            "entry format",
            Level::Ok,
            format!("writes format {f}: the previous build can still read the log (rollback safe)"),
        ),
        None => {}
    }
    let settings = &info["settings"];
    if settings.is_null() {
        if !info.is_null() {
            r.add(
                "compliance settings",
                Level::Warn,
                "shown to admins of every tenant only: give --token to check them",
            );
        }
        return;
    }
    let mut missing = Vec::new();
    if settings["retention_days"]
        .as_object()
        .is_none_or(|m| m.is_empty())
    {
        missing.push("no retention period (events are kept forever; set retention per tenant)");
    }
    if settings["policies"] != true {
        missing.push("no policy file (violations are not detected)");
    }
    let every = settings["compliance_check_every"].as_str();
    if every
        .and_then(aiaudit_ledger::auth::parse_duration_secs)
        .unwrap_or(0)
        == 0
    {
        missing.push("scheduled compliance checks are off");
    }
    if missing.is_empty() {
        r.add(
            "compliance settings",
            Level::Ok,
            "retention, policies and scheduled compliance checks configured",
        );
    } else {
        r.add("compliance settings", Level::Warn, missing.join("; "));
    }
}

/// A read-only performance smoke test: rounds of the reads auditors and
/// monitors make, timed one by one.
fn check_smoke(
    r: &mut Report,
    get: &dyn Fn(&str) -> reqwest::Result<reqwest::blocking::Response>,
    info: &Value,
    args: &ValidateArgs,
) {
    let size = info["size"].as_u64().unwrap_or(0);
    let mut paths = vec!["/checkpoint".to_string(), "/v1/info".to_string()];
    if size >= 2 {
        paths.push(format!(
            "/v1/proof/consistency?old={}&size={size}",
            size / 2
        ));
    }
    if size >= 256 {
        paths.push("/tile/0/000".to_string());
    } else if size >= 1 {
        paths.push(format!("/tile/0/000.p/{size}"));
    }
    let mut took = Vec::new();
    for _ in 0..args.smoke_requests {
        for p in &paths {
            let start = std::time::Instant::now();
            match get(p) {
                Ok(resp) if resp.status().is_success() => {
                    let _ = resp.bytes();
                    took.push(start.elapsed());
                }
                Ok(resp) => {
                    r.add(
                        "performance smoke",
                        Level::Fail,
                        format!("{p}: {}", resp.status()),
                    );
                    return;
                }
                Err(e) => {
                    r.add("performance smoke", Level::Fail, format!("{p}: {e}"));
                    return;
                }
            }
        }
    }
    took.sort();
    let p95 = took[(took.len() * 95).div_ceil(100).saturating_sub(1)];
    let detail = format!(
        "{} reads, p95 {:.1} ms (limit {} ms)",
        took.len(),
        p95.as_secs_f64() * 1000.0,
        args.smoke_max_p95_ms
    );
    let level = if p95 > Duration::from_millis(args.smoke_max_p95_ms) {
        Level::Fail
    } else {
        Level::Ok
    };
    r.add("performance smoke", level, detail);
}

fn httpdate(s: &str) -> Option<time::OffsetDateTime> {
    let f = time::format_description::parse_borrowed::<1>(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT",
    )
    .ok()?;
    time::PrimitiveDateTime::parse(s, &f)
        .ok()
        .map(|t| t.assume_utc())
}

/// Verifies the signed checkpoint, and its consistency with a saved one.
fn check_checkpoint(
    client: &reqwest::blocking::Client,
    base: &str,
    vkey: &str,
    note: &str,
    saved: Option<&Path>,
) -> anyhow::Result<String> {
    use aiaudit_tlog::{open_note, Checkpoint, Verifier};
    let verifier = Verifier::parse(vkey).context("verifier key")?;
    let cp = Checkpoint::parse_body(open_note(note, &verifier).context("checkpoint signature")?)?;
    let Some(path) = saved else {
        return Ok(format!("size {} signed by {}", cp.size, verifier.name()));
    };
    let mut cp = cp;
    let mut note = note.to_string();
    let mut detail = format!("size {}, signed", cp.size);
    if let Ok(old_note) = std::fs::read_to_string(path) {
        let old =
            Checkpoint::parse_body(open_note(&old_note, &verifier).context("saved checkpoint")?)?;
        // Behind a load balancer each answer may come from another node,
        // and a node serves the checkpoint it last read (about a second
        // old): a smaller one is asked for again before it counts.
        for _ in 0..5 {
            if old.size <= cp.size {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
            let again = client.get(format!("{base}/checkpoint")).send()?.text()?;
            cp = Checkpoint::parse_body(
                open_note(&again, &verifier).context("checkpoint signature")?,
            )?;
            note = again;
        }
        if old.size > cp.size {
            anyhow::bail!("the log shrank from {} to {}", old.size, cp.size);
        }
        let ledger = aiaudit_client::Client::with_http(base, client.clone());
        if !ledger.is_prefix((old.size, &old.root), (cp.size, &cp.root))? {
            anyhow::bail!(
                "not consistent with the saved checkpoint of size {}",
                old.size
            );
        }
        detail = format!(
            "size {}, signed, consistent with the saved size {}",
            cp.size, old.size
        );
    }
    std::fs::write(path, note)?;
    Ok(detail)
}

/// A checkpoint older than five minutes is a failure only while entries
/// wait for one: an idle log keeps its last checkpoint (as the
/// AiauditCheckpointStale alert reads it), and a daily check run at night
/// must not fail for that.
fn checkpoint_age(age: f64, sequenced: u64, checkpointed: u64) -> (Level, String) {
    let waiting = sequenced.saturating_sub(checkpointed);
    match (age > 300.0, waiting) {
        (true, 0) => (Level::Ok, format!("{age:.1} s, idle: every entry is in it")),
        (true, n) => (
            Level::Fail,
            format!("{age:.1} s, and {n} entries wait for a checkpoint"),
        ),
        (false, _) => (Level::Ok, format!("{age:.1} s")),
    }
}

#[cfg(test)]
mod tests {
    use super::{checkpoint_age, parse_size, Level};

    #[test]
    fn an_old_checkpoint_fails_only_while_entries_wait_for_one() {
        assert_eq!(checkpoint_age(3600.0, 40, 40).0, Level::Ok, "idle log");
        assert_eq!(checkpoint_age(3600.0, 41, 40).0, Level::Fail);
        assert!(checkpoint_age(3600.0, 41, 40).1.contains("1 entries wait"));
        assert_eq!(checkpoint_age(12.0, 41, 40).0, Level::Ok, "publishing");
    }

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("1234"), Ok(1234));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("5 MB"), Ok(5_000_000));
        assert!(parse_size("2 gigs").unwrap_err().contains("unknown unit"));
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("99999999999TiB")
            .unwrap_err()
            .contains("too large"));
    }
}
