//! Access records through the engine: what reads note is appended in
//! batches, and a record the ledger refuses is dropped alone, not retried
//! forever with every record after it.

use crate::common::*;
use aiaudit_ledger::access::{Access, Kind};
use aiaudit_ledger::{LedgerConfig, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_access_record_is_dropped_alone() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_with(LedgerConfig {
        access_log: true,
        ..config(dir.path())
    })
    .await;
    let start = ledger.status(None)["sequenced_size"].as_u64().unwrap();
    let reader = who(Role::Auditor, &["*"]);
    let note = |tenant: &str, index: u64| {
        ledger.note_access(
            &reader,
            Access {
                tenant: tenant.into(),
                kind: Kind::EventRead,
                indexes: vec![index],
                detail: None,
            },
        )
    };
    // First a record no event may carry (a tenant with a space), then
    // three good ones.
    note("not a tenant", 0);
    for t in ["acme", "globex", "initech"] {
        note(t, 1);
    }
    ledger.flush_access().await;
    let size = eventually("the three good records", || async {
        let s = ledger.status(None)["sequenced_size"].as_u64().unwrap();
        (s >= start + 3).then_some(s)
    })
    .await;
    assert_eq!(size, start + 3);
    // Nothing is left to retry.
    ledger.flush_access().await;
    assert_eq!(
        ledger.status(None)["sequenced_size"].as_u64().unwrap(),
        start + 3
    );
}
