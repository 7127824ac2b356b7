//! `aiaudit emit`: sends NDJSON events from a file or stdin through the SDK.
//! Every line is validated first: one bad line sends nothing.

use aiaudit_emitter::Emitter;
use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct EmitArgs {
    /// The ledger (or a local agent), e.g. http://127.0.0.1:7381
    #[arg(long, env = "AIAUDIT_URL")]
    url: String,
    /// Bearer token.
    #[arg(long, env = "AIAUDIT_TOKEN")]
    token: Option<String>,
    /// Keep undelivered events in this spool directory instead of failing.
    #[arg(long)]
    spool_dir: Option<PathBuf>,
    /// Sign each request with this emitter key (from `aiaudit emitter keygen`).
    #[arg(long)]
    signing_key: Option<PathBuf>,
    /// Batch-signature format: aiaudit-batch-v2 (RFC 8785) or, for a ledger
    /// older than v2, aiaudit-batch-v1.
    #[arg(long, default_value = "aiaudit-batch-v2", value_parser = crate::emitter::parse_signature_format)]
    signature_format: aiaudit_emitter::SignatureFormat,
    /// How requests are compressed: auto (zstd once the ledger's answers
    /// advertise it), zstd, gzip or off.
    #[arg(long, default_value = "auto", value_parser = crate::emitter::parse_compression)]
    compression: aiaudit_emitter::Compression,
    /// How long to wait for the ledger to acknowledge everything, in seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// NDJSON file of events, or - for standard input.
    #[arg(default_value = "-")]
    file: String,
}

pub fn run(args: EmitArgs) -> anyhow::Result<ExitCode> {
    let input: Box<dyn Read> = if args.file == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(&args.file).with_context(|| format!("opening {}", args.file))?)
    };
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for (n, line) in BufReader::new(input).lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(fields)) => match aiaudit_event::validate(&fields) {
                Ok(_) => events.push(Value::Object(fields)),
                Err(errs) => errors.extend(
                    errs.into_iter()
                        .map(|e| format!("line {}: {}: {}", n + 1, e.path, e.detail)),
                ),
            },
            Ok(_) => errors.push(format!("line {}: not a JSON object", n + 1)),
            Err(e) => errors.push(format!("line {}: not JSON: {e}", n + 1)),
        }
    }
    if !errors.is_empty() {
        for e in errors.iter().take(50) {
            eprintln!("aiaudit emit: {e}");
        }
        bail!("{} error(s); nothing was sent", errors.len());
    }
    let mut builder = Emitter::builder()
        .endpoint(&args.url)
        .max_backoff(Duration::from_secs(5));
    if let Some(t) = &args.token {
        builder = builder.token(t);
    }
    builder = builder.compression(args.compression);
    if let Some(dir) = &args.spool_dir {
        builder = builder.spool_dir(dir);
    }
    if let Some(pem) = crate::ca_cert_pem() {
        builder = builder.ca_cert_pem(pem);
    }
    if let Some(path) = &args.signing_key {
        builder = builder
            .signing_key(crate::emitter::load_signing_key(path)?)
            .signature_format(args.signature_format);
    }
    let emitter = builder.build()?;
    let total = events.len();
    for e in events {
        emitter.emit(e)?;
    }
    let timeout = Duration::from_secs(args.timeout);
    match emitter.flush_delivered(timeout) {
        Ok(()) => {
            // A batch the ledger refuses (an invalid event, a tenant the
            // token does not hold) is answered, so it counts as handled:
            // say so, and fail, rather than report it sent.
            let rejected = emitter.stats().rejected.load(Ordering::Relaxed);
            let why = emitter.last_error().unwrap_or_default();
            emitter.close(Duration::from_secs(1))?;
            if rejected > 0 {
                let kept = match &args.spool_dir {
                    Some(dir) => {
                        format!(" (set aside in {})", dir.join("rejected.ndjson").display())
                    }
                    None => String::new(),
                };
                eprintln!(
                    "aiaudit emit: the ledger refused {rejected} of {total} events{kept}: {why}"
                );
                return Ok(ExitCode::from(1));
            }
            println!("sent {total} events to {}", args.url);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let kept = if args.spool_dir.is_some() {
                " (kept in the spool; run again to resend)"
            } else {
                ""
            };
            eprintln!("aiaudit emit: {e}{kept}");
            drop(emitter);
            Ok(ExitCode::from(1))
        }
    }
}
