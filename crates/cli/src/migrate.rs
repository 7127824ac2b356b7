//! `aiaudit migrate`: moves an embedded log into PostgreSQL with the same
//! tree: the same entries at the same indexes, so the same root at the same
//! size, and the saved signed checkpoint stays valid. Resumable: a second
//! run checks what is already there and goes on from it.

use aiaudit_ledger::entry_format::Home;
use aiaudit_store::{LogReader, NewEntry, PgStore, Storage};
use aiaudit_tlog::{decode_entry_bundle, record_hash};
use anyhow::{bail, Context};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct MigrateArgs {
    /// Data directory of a stopped embedded ledger.
    #[arg(long)]
    from: PathBuf,
    /// postgres://user@host:port/db to move the log to (empty, or holding a prefix of this log).
    #[arg(long)]
    to: String,
    /// CA certificate (PEM) for the PostgreSQL server's certificate, with
    /// sslmode=require in --to (default: the system's roots).
    #[arg(long, env = "AIAUDIT_STORAGE_CA")]
    storage_ca: Option<PathBuf>,
}

/// Entries copied per transaction.
const CHUNK: u64 = 4096;

pub fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    if !aiaudit_store::is_postgres_url(&args.to) {
        bail!("--to must be a postgres:// URL, got {:?}", args.to);
    }
    let source = LogReader::open(&args.from)
        .with_context(|| format!("opening data directory {}", args.from.display()))?;
    // Before anything is copied.
    let ring = args.from.join(aiaudit_keyring::KEYRING_FILE);
    if ring.exists() {
        aiaudit_ledger::keys::check_shareable(&ring)?;
    }
    let note = source
        .checkpoint()?
        .context("the data directory has no signed checkpoint: start and stop the ledger once")?;
    let cp = aiaudit_store::parse_checkpoint(&note)?;
    let (dest, _) = PgStore::open_with_ca(&args.to, args.storage_ca.as_deref())
        .context("opening the PostgreSQL log")?;
    let have = dest.size();
    if have > cp.size {
        bail!(
            "the database already holds {have} entries, more than this log's {}: it is another log",
            cp.size
        );
    }
    // What the database holds must be this log's prefix, hash for hash.
    let mut at = 0;
    while at < have {
        let n = CHUNK.min(have - at);
        if dest.read_hashes(0, at, n)? != source.read_hashes(0, at, n)? {
            bail!(
                "the database holds another log (entries {at}..{} differ)",
                at + n
            );
        }
        at += n;
    }
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::new(cp.size - have)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut at = have;
    let mut blobs = 0u64;
    while at < cp.size {
        let n = CHUNK.min(cp.size - at);
        let bundle = source.read_entry_bundle(at, n)?;
        let entries = decode_entry_bundle(&bundle)?;
        // Blobs first, as the ledger writes them: before the entries that list them.
        for (i, e) in entries.iter().enumerate() {
            for r in aiaudit_event::sealed_v3::blob_refs(e) {
                blobs += copy_blob(&source, &dest, &r)
                    .with_context(|| format!("entry {}: blob at {}", at + i as u64, r.pointer))?;
            }
        }
        let batch = entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let key = aiaudit_event::entry_dedup_key(e)
                    .with_context(|| format!("entry {} has no readable id", at + i as u64))?;
                Ok(NewEntry {
                    key,
                    entry: e.to_vec(),
                    leaf: record_hash(e),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (i, a) in dest.append(&batch)?.iter().enumerate() {
            if a.duplicate || a.index != at + i as u64 {
                bail!(
                    "entry {} landed at {} (duplicate: {}); stop every node writing to the database",
                    at + i as u64,
                    a.index,
                    a.duplicate
                );
            }
        }
        at += n;
        bar.inc(n);
    }
    bar.finish_and_clear();
    let (size, root) = dest.sync()?;
    if size != cp.size || root != cp.root {
        bail!("the database's tree (size {size}) does not match the signed checkpoint (size {}): stop every node writing to it and run again", cp.size);
    }
    dest.save_checkpoint(&note)?;
    // The keys that open sealed content go with the log: every node uses them.
    let ring = args.from.join(aiaudit_keyring::KEYRING_FILE);
    let keys = if ring.exists() {
        aiaudit_ledger::keys::copy_into_shared(&ring, &dest.key_records())?
    } else {
        0
    };
    // So does the entry-format gate: nodes on the database write what the
    // embedded log's node wrote.
    let gate = aiaudit_ledger::entry_format::read_gate(Home::Dir(&args.from))?;
    if let Some(format) = gate {
        aiaudit_ledger::entry_format::raise_gate(Home::Shared(&dest), format)?;
    }
    println!(
        "migrated {} entries ({} were already there); size {} root {} match the signed checkpoint",
        cp.size - have,
        have,
        cp.size,
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, cp.root)
    );
    println!("keyring: {keys} records in the database");
    if blobs > 0 {
        println!("blobs: {blobs} copied and checked against their entries");
    }
    if let Some(format) = gate {
        println!("entry format: {format} (the upgrade gate, as the embedded log had it)");
    }
    println!(
        "next: start each node with --storage {} and the same log.key, master.key and tokens as {}",
        redact(&args.to),
        args.from.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Copies one blob into the database, checked against the SHA-256 its
/// entry logs (a damaged blob stops the migration: restore it from a
/// backup first). Returns 1 when copied.
fn copy_blob(
    source: &LogReader,
    dest: &PgStore,
    r: &aiaudit_event::sealed_v3::BlobRef,
) -> anyhow::Result<u64> {
    let name = aiaudit_store::blob_name(&r.commitment);
    let len = source
        .blob_len(&r.commitment)?
        .with_context(|| format!("blob {name} is missing from the data directory"))?;
    let bytes = source.read_blob(&r.commitment, 0, len as usize)?;
    let read = |offset: u64, n: usize| -> Result<Vec<u8>, String> {
        Ok(bytes[offset as usize..offset as usize + n].to_vec())
    };
    if aiaudit_event::blob::stored_hash(&read, len).map_err(anyhow::Error::msg)? != r.stored {
        bail!("blob {name} is not the bytes its entry logs: run `aiaudit verify --data-dir`");
    }
    let mut w = dest.blob_writer(&r.commitment)?;
    w.write(&bytes)?;
    w.commit()?;
    Ok(1)
}

/// The URL without its password, for printing.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
