//! `aiaudit emitter keygen|register|list`: emitter keys for signed batches.

use aiaudit_tlog::Signer;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct EmitterArgs {
    #[command(subcommand)]
    command: EmitterCommand,
}

#[derive(Subcommand, Debug)]
enum EmitterCommand {
    /// Create an emitter key: writes the private key (mode 0600) and prints the public verifier key.
    Keygen {
        /// The emitter's name (as it will be registered).
        #[arg(long)]
        name: String,
        /// Where to write the private key [default: <name>.key].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Register an emitter's public key with a running ledger (admin).
    Register {
        #[arg(long, env = "AIAUDIT_URL", default_value = "http://127.0.0.1:7381")]
        url: String,
        #[arg(long, env = "AIAUDIT_TOKEN")]
        token: String,
        #[arg(long)]
        name: String,
        /// The verifier key printed by `keygen` (or base64 of the 32-byte key), or a file holding it.
        #[arg(long)]
        public_key: String,
        /// Tenant it may append to when it authenticates by client certificate (mutual TLS; repeatable).
        #[arg(long = "tenant")]
        tenants: Vec<String>,
    },
    /// List registered emitters (admin).
    List {
        #[arg(long, env = "AIAUDIT_URL", default_value = "http://127.0.0.1:7381")]
        url: String,
        #[arg(long, env = "AIAUDIT_TOKEN")]
        token: String,
    },
}

/// `--signature-format`: which batch-signature format to sign in.
pub fn parse_signature_format(name: &str) -> Result<aiaudit_emitter::SignatureFormat, String> {
    aiaudit_emitter::SignatureFormat::parse(name).ok_or_else(|| {
        "aiaudit-batch-v2 (RFC 8785, the default) or aiaudit-batch-v1 (a ledger older than v2)"
            .into()
    })
}

pub fn parse_compression(name: &str) -> Result<aiaudit_emitter::Compression, String> {
    use aiaudit_emitter::Compression;
    match name {
        "auto" => Ok(Compression::Auto),
        "zstd" => Ok(Compression::Zstd),
        "gzip" => Ok(Compression::Gzip),
        "off" | "none" => Ok(Compression::Off),
        _ => Err("auto (zstd once the ledger advertises it), zstd, gzip or off".into()),
    }
}

/// Reads an emitter's private key file (written by `keygen`).
pub fn load_signing_key(path: &Path) -> anyhow::Result<Signer> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the signing key {}", path.display()))?;
    Signer::parse(text.trim()).with_context(|| format!("{} holds no emitter key", path.display()))
}

pub fn run(args: EmitterArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        EmitterCommand::Keygen { name, out } => {
            let signer = aiaudit_ledger::keys::generate(&name)?;
            let path = out.unwrap_or_else(|| PathBuf::from(format!("{name}.key")));
            aiaudit_ledger::keys::write_new_key_file(&path, &signer)?;
            eprintln!(
                "aiaudit: wrote the private key to {} (mode 0600)",
                path.display()
            );
            println!("{}", signer.verifier().to_vkey());
        }
        EmitterCommand::Register {
            url,
            token,
            name,
            public_key,
            tenants,
        } => {
            let key = if Path::new(&public_key).is_file() {
                std::fs::read_to_string(&public_key)?.trim().to_string()
            } else {
                public_key
            };
            let resp = crate::blocking_client(None)?
                .post(format!("{}/v1/emitters", url.trim_end_matches('/')))
                .bearer_auth(&token)
                .json(&json!({"name": name, "public_key": key, "tenants": tenants}))
                .send()
                .context("registering the emitter")?;
            let status = resp.status();
            let body: Value = resp.json().unwrap_or(Value::Null);
            if !status.is_success() {
                bail!("HTTP {status}: {}", body["detail"].as_str().unwrap_or(""));
            }
            println!(
                "registered {} ({})",
                name,
                body["verifier_key"].as_str().unwrap_or("")
            );
        }
        EmitterCommand::List { url, token } => {
            let resp = crate::blocking_client(None)?
                .get(format!("{}/v1/emitters", url.trim_end_matches('/')))
                .bearer_auth(&token)
                .send()?;
            let status = resp.status();
            let body: Value = resp.json().unwrap_or(Value::Null);
            if !status.is_success() {
                bail!("HTTP {status}: {}", body["detail"].as_str().unwrap_or(""));
            }
            for e in body["emitters"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}",
                    e["name"].as_str().unwrap_or(""),
                    e["verifier_key"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
