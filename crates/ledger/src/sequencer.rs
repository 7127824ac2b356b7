//! Group commit: one thread takes every batch waiting, appends them together
//! with one fsync pair, then acknowledges each request. Concurrent requests
//! thus share an fsync, and an acknowledgement always follows it.

use crate::error::Error;
use aiaudit_store::{Appended, NewEntry, Storage};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

struct Request {
    batch: Vec<NewEntry>,
    reply: oneshot::Sender<Result<Vec<Appended>, Error>>,
}

/// Sends batches to the sequencer.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Request>,
    writable: Arc<AtomicBool>,
}

impl Handle {
    /// False from a failed append (disk full, fsync error) until the next one succeeds.
    pub fn storage_writable(&self) -> bool {
        self.writable.load(Ordering::Relaxed)
    }

    /// Appends a batch and returns once it is durable.
    pub async fn append(&self, batch: Vec<NewEntry>) -> Result<Vec<Appended>, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request { batch, reply })
            .await
            .map_err(|_| Error::unavailable("the sequencer has stopped"))?;
        rx.await
            .map_err(|_| Error::unavailable("the sequencer has stopped"))?
    }
}

/// Starts the sequencer thread.
pub fn spawn(store: Arc<dyn Storage>, max_events: usize) -> Handle {
    // Bounded: when storage falls behind, handlers wait here (backpressure).
    let (tx, mut rx) = mpsc::channel::<Request>(4096);
    let writable = Arc::new(AtomicBool::new(true));
    let status = writable.clone();
    std::thread::Builder::new()
        .name("sequencer".into())
        .spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut group = vec![first];
                let mut events = group[0].batch.len();
                while events < max_events {
                    match rx.try_recv() {
                        Ok(r) => {
                            events += r.batch.len();
                            group.push(r);
                        }
                        Err(_) => break,
                    }
                }
                status.store(commit(&*store, group, events), Ordering::Relaxed);
            }
        })
        .expect("spawning the sequencer thread");
    Handle { tx, writable }
}

/// Appends a group and answers each request; returns whether the append worked.
fn commit(store: &dyn Storage, group: Vec<Request>, events: usize) -> bool {
    let mut all = Vec::with_capacity(events);
    let mut parts = Vec::with_capacity(group.len());
    for r in group {
        parts.push((r.batch.len(), r.reply));
        all.extend(r.batch);
    }
    match store.append(&all) {
        Ok(results) => {
            let mut results = results.into_iter();
            for (n, reply) in parts {
                let _ = reply.send(Ok(results.by_ref().take(n).collect()));
            }
            true
        }
        Err(e) => {
            let problem = Error::from_store(&e);
            for (_, reply) in parts {
                let _ = reply.send(Err(problem.clone()));
            }
            false
        }
    }
}
