//! `aiaudit report`: a compliance report of one tenant over a period from a
//! running ledger (`GET /v1/reports/compliance`), as HTML, JSON or Markdown;
//! `aiaudit report schedule`: what the scheduled checks found.

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReportArgs {
    #[command(subcommand)]
    schedule: Option<ReportCommand>,
    /// Base URL of the ledger.
    #[arg(long, env = "AIAUDIT_URL", default_value = "http://127.0.0.1:7381")]
    url: String,
    /// An auditor or admin token of the tenant.
    #[arg(long, env = "AIAUDIT_TOKEN", required = true)]
    token: Option<String>,
    /// The tenant to report on.
    #[arg(long, required = true)]
    tenant: Option<String>,
    /// Period start (RFC 3339, inclusive); default: 30 days before --to.
    #[arg(long)]
    from: Option<String>,
    /// Period end (RFC 3339, exclusive); default: now.
    #[arg(long)]
    to: Option<String>,
    /// The law the report is drawn up for: the EU AI Act (record keeping,
    /// oversight), Nigeria's NDPA 2023, South Africa's POPIA or Kenya's
    /// Data Protection Act 2019.
    #[arg(long, default_value = "eu-ai-act", value_parser = ["eu-ai-act", "ndpa", "popia", "kenya-dpa"])]
    framework: String,
    /// html (self-contained, with charts), json or md.
    #[arg(long, default_value = "html", value_parser = ["html", "json", "md"])]
    format: String,
    /// Write the report here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Subcommand, Debug)]
enum ReportCommand {
    /// What the scheduled compliance checks ran, when, and what they found
    /// (the `compliance.check` and `compliance.archived` records of the log).
    Schedule(ScheduleArgs),
}

#[derive(Args, Debug)]
struct ScheduleArgs {
    /// Base URL of the ledger.
    #[arg(long, env = "AIAUDIT_URL", default_value = "http://127.0.0.1:7381")]
    url: String,
    /// An auditor or admin token (of every tenant to see them all).
    #[arg(long, env = "AIAUDIT_TOKEN")]
    token: String,
    /// Only this tenant's checks.
    #[arg(long)]
    tenant: Option<String>,
    /// The newest this many records of each kind.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// The records as JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

fn fetch_records(args: &ScheduleArgs, action: &str) -> anyhow::Result<Vec<Value>> {
    let client = crate::blocking_client(None)?;
    let base = args.url.trim_end_matches('/');
    let mut q = vec![
        ("action", action.to_string()),
        ("order", "desc".to_string()),
        ("limit", args.limit.to_string()),
    ];
    q.extend(args.tenant.clone().map(|t| ("tenant", t)));
    let body = crate::query::events_page(&client, base, &args.token, &q)?;
    Ok(body["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        // Only the ledger's own records: a caller cannot write these
        // actions, but an older log may hold imitations from before.
        .filter(|e| e["event"]["source"]["name"] == "aiaudit" || e["source"]["name"] == "aiaudit")
        .collect())
}

fn schedule(args: ScheduleArgs) -> anyhow::Result<ExitCode> {
    let checks = fetch_records(&args, "compliance.check")?;
    let archives = fetch_records(&args, "compliance.archived")?;
    let event = |r: &Value| {
        if r["event"].is_object() {
            r["event"].clone()
        } else {
            r.clone()
        }
    };
    if args.json {
        for r in checks.iter().chain(&archives) {
            println!("{}", event(r));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if checks.is_empty() {
        println!("no scheduled compliance check has run yet (see [compliance] check_every)");
    }
    for r in &checks {
        let e = event(r);
        let a = &e["attributes"];
        let f = &a["findings"];
        println!(
            "{}  {}  {}  {} .. {}  high {} medium {} info {}  checkpoint {}",
            e["time"].as_str().unwrap_or(""),
            e["tenant"].as_str().unwrap_or(""),
            a["framework"].as_str().unwrap_or(""),
            a["period_from"].as_str().unwrap_or(""),
            a["period_to"].as_str().unwrap_or(""),
            f["high"],
            f["medium"],
            f["info"],
            a["checkpoint_size"],
        );
        for h in a["high_findings"].as_array().into_iter().flatten() {
            println!(
                "    HIGH {}: {}",
                h["section"].as_str().unwrap_or(""),
                h["text"].as_str().unwrap_or("")
            );
        }
    }
    for r in &archives {
        let e = event(r);
        let a = &e["attributes"];
        println!(
            "{}  {}  {}  archived {} .. {}",
            e["time"].as_str().unwrap_or(""),
            e["tenant"].as_str().unwrap_or(""),
            a["framework"].as_str().unwrap_or(""),
            a["period_from"].as_str().unwrap_or(""),
            a["period_to"].as_str().unwrap_or(""),
        );
        for file in a["files"].as_array().into_iter().flatten() {
            println!(
                "    {}  sha256 {}",
                file["name"].as_str().unwrap_or(""),
                file["sha256"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn query(args: &ReportArgs) -> Vec<(&'static str, String)> {
    let mut q = vec![
        ("tenant", args.tenant.clone().unwrap_or_default()),
        ("format", args.format.clone()),
        ("framework", args.framework.clone()),
    ];
    q.extend(args.from.clone().map(|v| ("from", v)));
    q.extend(args.to.clone().map(|v| ("to", v)));
    q
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    if let Some(ReportCommand::Schedule(s)) = args.schedule {
        return schedule(s);
    }
    let client = crate::blocking_client(None)?;
    let base = args.url.trim_end_matches('/');
    let resp = client
        .get(format!("{base}/v1/reports/compliance"))
        .bearer_auth(args.token.as_deref().unwrap_or_default())
        .query(&query(&args))
        .send()
        .with_context(|| format!("GET {base}/v1/reports/compliance"))?;
    let status = resp.status();
    if !status.is_success() {
        let body: Value = resp.json().unwrap_or(Value::Null);
        bail!("HTTP {status}: {}", body["detail"].as_str().unwrap_or(""));
    }
    let body = resp.bytes().context("downloading the report")?;
    match &args.out {
        Some(path) => {
            // Written whole or not at all: a half report must not pass for one.
            let tmp = path.with_extension("partial");
            std::fs::write(&tmp, &body).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, path)
                .with_context(|| format!("renaming to {}", path.display()))?;
            eprintln!("wrote {} ({} bytes)", path.display(), body.len());
        }
        None => std::io::stdout()
            .write_all(&body)
            .context("writing to standard output")?,
    }
    Ok(ExitCode::SUCCESS)
}
