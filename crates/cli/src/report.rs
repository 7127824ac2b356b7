//! `aiaudit report`: a compliance report of one tenant over a period from a
//! running ledger (`GET /v1/reports/compliance`), as HTML, JSON or Markdown.

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Base URL of the ledger.
    #[arg(long, env = "AIAUDIT_URL", default_value = "http://127.0.0.1:7381")]
    url: String,
    /// An auditor or admin token of the tenant.
    #[arg(long, env = "AIAUDIT_TOKEN")]
    token: String,
    /// The tenant to report on.
    #[arg(long)]
    tenant: String,
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

fn query(args: &ReportArgs) -> Vec<(&'static str, String)> {
    let mut q = vec![
        ("tenant", args.tenant.clone()),
        ("format", args.format.clone()),
        ("framework", args.framework.clone()),
    ];
    q.extend(args.from.clone().map(|v| ("from", v)));
    q.extend(args.to.clone().map(|v| ("to", v)));
    q
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let client = crate::blocking_client(None)?;
    let base = args.url.trim_end_matches('/');
    let resp = client
        .get(format!("{base}/v1/reports/compliance"))
        .bearer_auth(&args.token)
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
