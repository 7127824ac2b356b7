//! `aiaudit token create|list|revoke`: token management against a running ledger.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// Base URL of the ledger.
    #[arg(
        long,
        env = "AIAUDIT_URL",
        global = true,
        default_value = "http://127.0.0.1:7381"
    )]
    url: String,
    /// An admin token.
    #[arg(long, env = "AIAUDIT_TOKEN", global = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Create a token; prints the new token alone on stdout (it is shown only once).
    Create {
        /// Tenant the token may act on (repeat for several; `*` for all).
        #[arg(long = "tenant", required = true)]
        tenants: Vec<String>,
        /// emitter, auditor or admin.
        #[arg(long)]
        role: String,
        /// Lifetime such as 30d, 12h, 45m.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id; effective at once.
    Revoke { id: String },
}

fn check(resp: reqwest::blocking::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let body: Value = resp.json().unwrap_or(Value::Null);
    if !status.is_success() {
        let detail = body["detail"].as_str().unwrap_or("");
        bail!("HTTP {status}: {detail}");
    }
    Ok(body)
}

pub fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let token = args
        .token
        .context("an admin token is required (--token or AIAUDIT_TOKEN)")?;
    let base = args.url.trim_end_matches('/');
    let client = crate::blocking_client(None)?;
    match args.command {
        TokenCommand::Create {
            tenants,
            role,
            expires,
        } => {
            let body = check(
                client
                    .post(format!("{base}/v1/tokens"))
                    .bearer_auth(&token)
                    .json(&json!({"tenants": tenants, "role": role, "expires": expires}))
                    .send()
                    .with_context(|| format!("POST {base}/v1/tokens"))?,
            )?;
            println!("{}", body["token"].as_str().unwrap_or_default());
        }
        TokenCommand::List { json } => {
            let body = check(
                client
                    .get(format!("{base}/v1/tokens"))
                    .bearer_auth(&token)
                    .send()
                    .with_context(|| format!("GET {base}/v1/tokens"))?,
            )?;
            if json {
                for t in body["tokens"].as_array().into_iter().flatten() {
                    println!("{t}");
                }
            } else {
                println!(
                    "{:<18} {:<8} {:<8} {:<20} TENANTS",
                    "ID", "ROLE", "REVOKED", "EXPIRES"
                );
                for t in body["tokens"].as_array().into_iter().flatten() {
                    println!(
                        "{:<18} {:<8} {:<8} {:<20} {}",
                        t["id"].as_str().unwrap_or(""),
                        t["role"].as_str().unwrap_or(""),
                        t["revoked"].as_bool().unwrap_or(false),
                        t["expires_unix"]
                            .as_i64()
                            .map(|e| aiaudit_ledger::reports::rfc3339(e.saturating_mul(1000)))
                            .unwrap_or_else(|| "never".into()),
                        t["tenants"]
                            .as_array()
                            .map(|a| a
                                .iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(","))
                            .unwrap_or_default(),
                    );
                }
            }
        }
        TokenCommand::Revoke { id } => {
            check(
                client
                    .delete(format!("{base}/v1/tokens/{id}"))
                    .bearer_auth(&token)
                    .send()
                    .with_context(|| format!("DELETE {base}/v1/tokens/{id}"))?,
            )?;
            println!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
