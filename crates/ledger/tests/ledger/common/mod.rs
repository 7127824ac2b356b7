//! Setup shared by the engine's integration tests: a ledger in a temporary
//! directory, principals built directly, events, and waiting for what the
//! background tasks (publisher, indexer, policy engine, retention) do.

// Each test crate uses its own subset of these.
#![allow(dead_code)]

pub mod node;

use aiaudit_ledger::{Batch, EntryView, Ledger, LedgerConfig, Principal, Role};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a background effect may take before a test gives up on it.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn config(dir: &Path) -> LedgerConfig {
    LedgerConfig {
        data_dir: dir.to_path_buf(),
        publish_interval: Duration::from_millis(50),
        // These tests count entries after reading: reads are not logged
        // here (tests/e2e/access.rs tests the access records).
        access_log: false,
        ..LedgerConfig::default()
    }
}

pub fn who(role: Role, tenants: &[&str]) -> Principal {
    Principal {
        token_id: format!("{role:?}-{}", tenants.join("+")).to_lowercase(),
        role,
        tenants: tenants.iter().map(|t| t.to_string()).collect(),
    }
}

pub fn root() -> Principal {
    who(Role::Admin, &["*"])
}

pub fn event(id: &str, tenant: &str) -> Value {
    json!({"id": id, "time": "2026-11-27T09:14:03Z", "tenant": tenant,
           "source": {"name": "app"}, "actor": {"id": "a", "type": "agent"},
           "action": "agent.decision", "subject": "customer-1"})
}

pub fn batch(events: Vec<Value>) -> Batch {
    Batch {
        events,
        signature: None,
    }
}

pub async fn open(dir: &Path) -> Arc<Ledger> {
    Ledger::open(config(dir)).await.unwrap()
}

pub async fn open_with(config: LedgerConfig) -> Arc<Ledger> {
    Ledger::open(config).await.unwrap()
}

/// Appends `events` as an admin of every tenant and returns their indexes.
pub async fn append(ledger: &Arc<Ledger>, events: Vec<Value>) -> Vec<u64> {
    let accepted = ledger.append(&root(), batch(events)).await.unwrap();
    accepted.appended.iter().map(|a| a.index).collect()
}

/// Polls `check` until it gives a value; panics naming `what` after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the search index covers every logged entry.
pub async fn indexed(ledger: &Arc<Ledger>) {
    eventually("the search index to catch up", || async {
        let s = ledger.status(None);
        (s["index"]["lag_events"] == 0 && s["index"]["indexed_size"] == s["sequenced_size"])
            .then_some(())
    })
    .await
}

/// One event as `who` reads it, without proof.
pub async fn read(ledger: &Arc<Ledger>, who: &Principal, index: u64) -> Value {
    let EntryView(v) = ledger.entry(who, index, false).await.unwrap();
    v
}

pub fn unb64(s: &Value) -> Vec<u8> {
    B64.decode(s.as_str().expect("a base64 string")).unwrap()
}

pub fn hash32(bytes: &[u8]) -> [u8; 32] {
    bytes.try_into().expect("32 bytes")
}

/// Copies a data directory, as a restart on the same files would find it.
///
/// A ledger's background threads keep its files (and their locks) open for
/// the life of the process, so a test restarts on a copy taken after
/// [`aiaudit_ledger::Ledger::shutdown`] instead of on the directory itself.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            match std::fs::copy(entry.path(), &target) {
                // A temporary file renamed away meanwhile: not part of the state.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => {
                    other.unwrap();
                }
            }
        }
    }
}

/// Shuts `ledger` down once the publisher and the index have caught up (so
/// nothing writes while the copy is taken) and returns a fresh copy of its
/// directory.
pub async fn restart_copy(ledger: &Arc<Ledger>, from: &Path) -> tempfile::TempDir {
    let size = ledger.status(None)["sequenced_size"].as_u64().unwrap();
    ledger.await_checkpoint(size).await.unwrap();
    indexed(ledger).await;
    ledger.shutdown().await.unwrap();
    let copy = tempfile::tempdir().unwrap();
    copy_dir(from, copy.path());
    copy
}
