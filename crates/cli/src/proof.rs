//! `aiaudit proof --index N`: a C2SP tlog-proof of one event (its entry,
//! inclusion proof and the cosigned checkpoint), to keep and check offline
//! later with `aiaudit verify --proof FILE --policy FILE`.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ProofArgs {
    /// Base URL of the ledger.
    #[arg(long, env = "AIAUDIT_URL", default_value = "http://127.0.0.1:7381")]
    url: String,
    /// Bearer token (an auditor or admin of the event's tenant).
    #[arg(long, env = "AIAUDIT_TOKEN")]
    token: Option<String>,
    /// The event's log index.
    #[arg(long)]
    index: u64,
    /// Write the proof here (conventionally `<name>.tlog-proof`) instead of standard output.
    #[arg(long, short)]
    out: Option<PathBuf>,
}

pub fn run(args: ProofArgs) -> anyhow::Result<ExitCode> {
    let client = crate::ledger_client(&args.url, args.token.as_deref())?;
    let text = client
        .tlog_proof(args.index)
        .with_context(|| format!("the proof of event {}", args.index))?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
