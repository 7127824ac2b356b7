//! Integration and publication: brings the tree up to the durable size,
//! signs a checkpoint (C2SP tlog-checkpoint as a signed note), saves it
//! durably, and only then serves it.

use crate::Published;
use aiaudit_store::Storage;
use aiaudit_tlog::{open_note, sign_note, Checkpoint, Signer, Verifier};
use anyhow::{bail, Context};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// The saved checkpoint, if any, checked against this log's key and origin.
fn saved(store: &dyn Storage, verifier: &Verifier) -> anyhow::Result<Option<Published>> {
    let Some(note) = store.checkpoint()? else {
        return Ok(None);
    };
    let body = open_note(&note, verifier)
        .context("the saved checkpoint is not signed by this log's key")?;
    let checkpoint = Checkpoint::parse_body(body)?;
    if checkpoint.origin != verifier.name() {
        bail!(
            "the saved checkpoint is for {:?}, not {:?}",
            checkpoint.origin,
            verifier.name()
        );
    }
    Ok(Some(Published {
        checkpoint,
        note,
        at: Instant::now(),
    }))
}

/// The checkpoint to serve at start: the saved one, checked against our key,
/// or a fresh one when the log is new or grew unpublished before a crash.
pub fn initial(
    store: &dyn Storage,
    signer: &Signer,
    verifier: &Verifier,
) -> anyhow::Result<Published> {
    if let Some(p) = saved(store, verifier)? {
        // On a shared log only the elected node publishes; the others serve
        // what it saved.
        if p.checkpoint.size == store.size() || !store.is_publisher() {
            return Ok(p);
        }
    }
    if !store.is_publisher() {
        // Nothing saved yet and another node holds the lease: serve a
        // checkpoint of the tree it integrated, signed here, unsaved (only
        // the lease holder may save one).
        let (size, root) = store.integrate()?;
        return signed(signer, size, root);
    }
    publish(store, signer)
}

fn signed(signer: &Signer, size: u64, root: aiaudit_tlog::Hash) -> anyhow::Result<Published> {
    let checkpoint = Checkpoint {
        origin: signer.name().to_string(),
        size,
        root,
        extensions: Vec::new(),
    };
    let note = sign_note(&checkpoint.body(), signer)?;
    Ok(Published {
        checkpoint,
        note,
        at: Instant::now(),
    })
}

/// Integrates and publishes one checkpoint at the current durable size.
pub fn publish(store: &dyn Storage, signer: &Signer) -> anyhow::Result<Published> {
    let (size, root) = store.integrate()?;
    let published = signed(signer, size, root)?;
    store.save_checkpoint(&published.note)?;
    Ok(published)
}

/// Publishes whenever the log grew, at most `interval / 2` after the growth,
/// and at once when `now` is notified (a client waits for a checkpoint).
/// A node that is not the publisher of a shared log serves the checkpoints
/// the publisher saves instead.
pub fn spawn(
    store: Arc<dyn Storage>,
    signer: Arc<Signer>,
    verifier: Verifier,
    interval: Duration,
    latest: watch::Sender<Arc<Published>>,
    now: Arc<Notify>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval((interval / 2).max(Duration::from_millis(5)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = now.notified() => {}
            }
            if store.size() == latest.borrow().checkpoint.size {
                continue;
            }
            let (s, k, v) = (store.clone(), signer.clone(), verifier.clone());
            let than = latest.borrow().checkpoint.size;
            let work = move || {
                if s.is_publisher() {
                    publish(&*s, &k).map(Some)
                } else {
                    // Another node's checkpoint, once it is newer.
                    saved(&*s, &v).map(|p| p.filter(|p| p.checkpoint.size > than))
                }
            };
            match tokio::task::spawn_blocking(work).await {
                Ok(Ok(None)) => {}
                Ok(Ok(Some(p))) => {
                    tracing::debug!(size = p.checkpoint.size, "checkpoint published");
                    latest.send_replace(Arc::new(p));
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "publishing a checkpoint failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => tracing::error!(error = %e, "publisher task failed"),
            }
        }
    });
}
