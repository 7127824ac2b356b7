//! Background scrub: every stored tree node is re-checked against its
//! children, and the root against the latest signed checkpoint, so damage
//! to the files proofs are computed from is found while the ledger runs
//! (it counts as a verification failure, which pages), not only by an
//! offline `aiaudit verify`.

use crate::Ledger;
use std::sync::Arc;
use std::time::Duration;

/// Runs a scrub every `every` on a thread of its own (zero: never).
pub fn spawn(ledger: Arc<Ledger>, every: Duration) {
    if every.is_zero() {
        return;
    }
    std::thread::Builder::new()
        .name("scrub".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            let problems = scrub(&ledger);
            if problems.is_empty() {
                tracing::debug!("scrub: every stored tree node checks out");
            }
        })
        .expect("starting the scrub thread");
}

/// One pass; returns what it found (also logged and counted).
pub fn scrub(ledger: &Ledger) -> Vec<aiaudit_tlog::Problem> {
    let published = ledger.latest.borrow().clone();
    let size = published.checkpoint.size;
    let store = &ledger.store;
    let mut problems = aiaudit_tlog::check_stored_levels(size, |level, start, count| {
        store.read_hashes(level, start, count)
    });
    if problems.is_empty() && size > 0 {
        match aiaudit_tlog::tree_hash(size, &&**store) {
            Ok(root) if root == published.checkpoint.root => {}
            Ok(_) => problems.push(aiaudit_tlog::Problem {
                index: size,
                what: "the stored tree no longer hashes to the signed checkpoint's root".into(),
            }),
            Err(e) => problems.push(aiaudit_tlog::Problem {
                index: size,
                what: format!("the stored tree cannot be read: {e}"),
            }),
        }
    }
    for p in &problems {
        tracing::error!(index = p.index, problem = %p.what, "scrub: the stored log is damaged");
    }
    if !problems.is_empty() {
        ledger.metrics.verification_failures.inc();
        ledger.detector().detect(crate::incidents::Detection {
            key: "verification".into(),
            title: "The stored log failed verification".into(),
            detail: format!(
                "{} problem(s) at tree size {size}; first: {} (index {})",
                problems.len(),
                problems[0].what,
                problems[0].index
            ),
            severity: aiaudit_incident::Severity::Critical,
            tenant: crate::incidents::LEDGER_TENANT.into(),
            origin: "ledger",
            related: Default::default(),
        });
    }
    // A pass over this size is complete: what tests and operators wait on.
    ledger.metrics.scrubbed_size.set(size as i64);
    problems
}
