//! `aiaudit witness`: run a C2SP tlog-witness that cosigns the checkpoints
//! of the logs it is told to trust, only when they are consistent with what
//! it cosigned before.

use aiaudit_tlog::Verifier;
use aiaudit_witness::{Witness, WitnessOptions};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct WitnessArgs {
    #[command(subcommand)]
    command: WitnessCommand,
}

#[derive(Subcommand, Debug)]
enum WitnessCommand {
    /// Answer `POST /add-checkpoint` (C2SP tlog-witness) at the root of --listen.
    Serve(ServeWitnessArgs),
    /// Print the witness's verifier key (creating the key if needed).
    Vkey {
        /// The witness's data directory.
        #[arg(long, env = "AIAUDIT_WITNESS_DATA_DIR")]
        data_dir: PathBuf,
        /// The key name for a new key (default: <hostname>/witness).
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Args, Debug)]
struct ServeWitnessArgs {
    /// Where the key, the checkpoints held and the evidence live (created 0700).
    #[arg(long, env = "AIAUDIT_WITNESS_DATA_DIR")]
    data_dir: PathBuf,
    /// Address to listen on. Put a TLS reverse proxy in front of it on a public address.
    #[arg(long, default_value = "127.0.0.1:7390", env = "AIAUDIT_WITNESS_LISTEN")]
    listen: String,
    /// A log's verifier key (`<origin>+<hex id>+<base64 key>`, or a file holding it). Repeatable.
    #[arg(long = "log", required = true)]
    logs: Vec<String>,
    /// The witness key's name, used when the key is generated (default: <hostname>/witness).
    #[arg(long)]
    name: Option<String>,
    /// Log format: text or json.
    #[arg(long, default_value = "text", env = "AIAUDIT_LOG_FORMAT")]
    log_format: String,
}

pub fn run(args: WitnessArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        WitnessCommand::Vkey { data_dir, name } => {
            let w = Witness::open(WitnessOptions {
                dir: data_dir,
                name,
                logs: Vec::new(),
            })?;
            println!("{}", w.vkey());
            Ok(ExitCode::SUCCESS)
        }
        WitnessCommand::Serve(a) => serve(a),
    }
}

fn serve(a: ServeWitnessArgs) -> anyhow::Result<ExitCode> {
    crate::serve::init_logging(&a.log_format)?;
    let logs = a
        .logs
        .iter()
        .map(|k| crate::verify::load_vkey(k))
        .collect::<anyhow::Result<Vec<Verifier>>>()?;
    let witness = Arc::new(Witness::open(WitnessOptions {
        dir: a.data_dir.clone(),
        name: a.name,
        logs,
    })?);
    // The verifier key goes to standard output, for scripts to capture.
    println!("{}", witness.vkey());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&a.listen)
            .await
            .with_context(|| format!("listening on {}", a.listen))?;
        tracing::info!(
            listen = %listener.local_addr()?,
            vkey = %witness.vkey(),
            logs = ?witness.origins(),
            "witness ready"
        );
        axum::serve(listener, aiaudit_witness::router(witness))
            .with_graceful_shutdown(crate::serve::shutdown_signal())
            .await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
