//! `aiaudit upgrade`: the entry-format gate of a log (docs/operations.md,
//! "Upgrades and rollback"). `status` says which sealed format the log's
//! nodes write; `finalize` lets them write the newest one, after which
//! builds older than it can no longer read the log.

use aiaudit_ledger::entry_format::{self, Home, LATEST, PREVIOUS};
use aiaudit_store::PgStore;
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct UpgradeArgs {
    #[command(subcommand)]
    command: UpgradeCommand,
}

#[derive(Subcommand)]
enum UpgradeCommand {
    /// Which sealed entry format the log's nodes write, and whether the upgrade is finalized.
    Status(GateArgs),
    /// Let every node write the newest entry format from its next start on.
    /// After this, rolling back to a build older than this one is not possible.
    Finalize(GateArgs),
}

#[derive(Args)]
struct GateArgs {
    /// Data directory of the embedded log.
    #[arg(long, env = "AIAUDIT_DATA_DIR", default_value = aiaudit_ledger::config::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// postgres:// URL of a log shared by several nodes (instead of --data-dir).
    #[arg(long, env = "AIAUDIT_STORAGE")]
    storage: Option<String>,
    /// CA certificate (PEM) for the PostgreSQL server's certificate.
    #[arg(long, env = "AIAUDIT_STORAGE_CA")]
    storage_ca: Option<PathBuf>,
}

pub fn run(args: UpgradeArgs) -> anyhow::Result<ExitCode> {
    let (finalize, gate) = match args.command {
        UpgradeCommand::Status(g) => (false, g),
        UpgradeCommand::Finalize(g) => (true, g),
    };
    let pg;
    let home = match &gate.storage {
        Some(url) => {
            pg = PgStore::open_with_ca(url, gate.storage_ca.as_deref())
                .context("opening the PostgreSQL log")?
                .0;
            Home::Shared(&pg)
        }
        None => {
            if !gate.data_dir.join("FORMAT").exists() {
                anyhow::bail!("{} is not a data directory", gate.data_dir.display());
            }
            Home::Dir(&gate.data_dir)
        }
    };
    if finalize {
        let now = entry_format::raise_gate(home, LATEST)?;
        println!(
            "finalized: nodes write entry format {now} from their next start; \
             builds that cannot read it can no longer serve this log"
        );
        return Ok(ExitCode::SUCCESS);
    }
    match entry_format::read_gate(home)? {
        Some(v) => println!("entry format {v}: finalized (this build writes up to {LATEST})"),
        None => println!(
            "entry format {PREVIOUS}: not finalized, rolling back to the previous build is possible; \
             run `aiaudit upgrade finalize` once every node runs this build"
        ),
    }
    Ok(ExitCode::SUCCESS)
}
