//! `aiaudit violations list|ack|resolve`: the violation lifecycle from the
//! command line (auditor or admin token).

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ViolationsArgs {
    /// Base URL of the ledger.
    #[arg(
        long,
        env = "AIAUDIT_URL",
        global = true,
        default_value = "http://127.0.0.1:7381"
    )]
    url: String,
    /// An auditor or admin token.
    #[arg(long, env = "AIAUDIT_TOKEN", global = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: ViolationsCommand,
}

#[derive(Subcommand, Debug)]
enum ViolationsCommand {
    /// List violations (a table, or JSON lines with --json).
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// open, acknowledged or resolved.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        rule: Option<String>,
        /// info, low, medium, high or critical.
        #[arg(long)]
        severity: Option<String>,
        /// Most violations to print (pages are followed up to it).
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Start after this cursor (printed when more remain).
        #[arg(long)]
        cursor: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge a violation (logged).
    Ack {
        id: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Resolve a violation with a note (logged).
    Resolve {
        id: String,
        #[arg(long)]
        note: String,
    },
}

pub fn run(args: ViolationsArgs) -> anyhow::Result<ExitCode> {
    let token = args
        .token
        .context("a token is required (--token or AIAUDIT_TOKEN)")?;
    let base = args.url.trim_end_matches('/');
    let client = crate::blocking_client(None)?;
    let check = |resp: reqwest::blocking::Response| -> anyhow::Result<Value> {
        let status = resp.status();
        let body: Value = resp.json().unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("HTTP {status}: {}", body["detail"].as_str().unwrap_or(""));
        }
        Ok(body)
    };
    match args.command {
        ViolationsCommand::List {
            tenant,
            status,
            rule,
            severity,
            limit,
            mut cursor,
            json,
        } => {
            let filters: Vec<(&str, String)> = [
                ("tenant", tenant),
                ("status", status),
                ("rule", rule),
                ("severity", severity),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
            let mut items: Vec<Value> = Vec::new();
            let mut total: u64;
            loop {
                let mut params = filters.clone();
                let page = (limit - items.len() as u64).clamp(1, 1000);
                params.push(("limit", page.to_string()));
                if let Some(c) = &cursor {
                    params.push(("cursor", c.clone()));
                }
                let body = check(
                    client
                        .get(format!("{base}/v1/violations"))
                        .bearer_auth(&token)
                        .query(&params)
                        .send()
                        .with_context(|| format!("GET {base}/v1/violations"))?,
                )?;
                total = body["total"].as_u64().unwrap_or(0);
                items.extend(body["violations"].as_array().cloned().unwrap_or_default());
                cursor = body["next_cursor"].as_str().map(str::to_string);
                if cursor.is_none() || items.len() as u64 >= limit {
                    break;
                }
            }
            // Never a silent cut: say how many there are and how to go on.
            match &cursor {
                Some(c) => eprintln!(
                    "{} of {total} violations; more with --cursor {c}",
                    items.len()
                ),
                None if !json => eprintln!("{} of {total} violations", items.len()),
                None => {}
            }
            if json {
                for v in &items {
                    println!("{v}");
                }
            } else {
                println!(
                    "{:<38} {:<10} {:<13} {:<9} {:<24} RULE",
                    "ID", "TENANT", "STATUS", "SEVERITY", "TIME"
                );
                for v in &items {
                    let s = |x: &Value| x.as_str().unwrap_or("-").to_string();
                    println!(
                        "{:<38} {:<10} {:<13} {:<9} {:<24} {}",
                        s(&v["id"]),
                        s(&v["tenant"]),
                        s(&v["status"]),
                        s(&v["severity"]),
                        s(&v["time"]),
                        s(&v["rule"])
                    );
                }
            }
        }
        ViolationsCommand::Ack { id, note } => {
            let body = transition(&client, base, &token, &id, "acknowledged", &note, &check)?;
            println!("{body}");
        }
        ViolationsCommand::Resolve { id, note } => {
            let body = transition(&client, base, &token, &id, "resolved", &note, &check)?;
            println!("{body}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn transition(
    client: &reqwest::blocking::Client,
    base: &str,
    token: &str,
    id: &str,
    status: &str,
    note: &str,
    check: &dyn Fn(reqwest::blocking::Response) -> anyhow::Result<Value>,
) -> anyhow::Result<Value> {
    check(
        client
            .post(format!("{base}/v1/violations/{id}"))
            .bearer_auth(token)
            .json(&json!({"status": status, "note": note}))
            .send()
            .with_context(|| format!("POST {base}/v1/violations/{id}"))?,
    )
}
