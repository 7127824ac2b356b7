//! Group commit: one thread takes every batch waiting and writes them
//! together; a second makes what was written durable (one fsync pair for
//! every group written meanwhile), then acknowledges each request.
//! Concurrent requests thus share an fsync, the next group is written while
//! the previous one syncs, and an acknowledgement always follows the fsync.

use crate::error::Error;
use aiaudit_store::{Appended, NewEntry, Storage, Written};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    writable: Arc<Writable>,
    stopped: Arc<AtomicBool>,
}

/// Held by the sequencer and the syncer thread: marks them stopped when the
/// thread ends, a panic included (it unwinds through this). Neither ends
/// while the ledger runs otherwise, and nothing restarts them: every append
/// fails from then on, so health and readiness must say so.
struct StopsWith {
    thread: &'static str,
    stopped: Arc<AtomicBool>,
}

impl Drop for StopsWith {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(
                thread = self.thread,
                "a thread of the log's writer stopped on a panic: nothing more is appended until the ledger restarts"
            );
        }
        self.stopped.store(true, Ordering::SeqCst);
    }
}

/// Whether the latest group that wrote anything reached the disk. Two
/// threads report (the sequencer a failed write, the syncer each sync), and
/// a later group's sync may finish while the sequencer reports an even
/// later group's failed write: each report carries its group's number, and
/// only the latest group's counts.
struct Writable(AtomicU64);

impl Writable {
    fn new() -> Self {
        Writable(AtomicU64::new(1))
    }

    fn report(&self, group: u64, ok: bool) {
        self.0
            .fetch_max((group << 1) | u64::from(ok), Ordering::SeqCst);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst) & 1 == 1
    }
}

impl Handle {
    /// False from a failed append (disk full, fsync error) until a later one
    /// writes and syncs. A group of duplicates only writes nothing, so it
    /// changes nothing.
    pub fn storage_writable(&self) -> bool {
        self.writable.get()
    }

    /// Whether the sequencer and its syncer still run: false once either
    /// stopped (a panic), after which no batch is acknowledged again.
    pub fn running(&self) -> bool {
        !self.stopped.load(Ordering::SeqCst)
    }

    /// Appends a batch and returns once it is durable.
    pub async fn append(&self, batch: Vec<NewEntry>) -> Result<Vec<Appended>, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request { batch, reply })
            .await
            .map_err(|_| self.stopped_now())?;
        rx.await.map_err(|_| self.stopped_now())?
    }

    /// Every request is answered unless its thread unwinds from a panic,
    /// which drops the replies before the thread's guard marks it stopped:
    /// marked here too, so that health checks agree with the 503 the caller
    /// is about to get.
    fn stopped_now(&self) -> Error {
        self.stopped.store(true, Ordering::SeqCst);
        Error::unavailable("the sequencer has stopped")
    }
}

/// A written group waiting to be durable, with the requests to answer.
struct Unsynced {
    group: u64,
    /// Whether the group wrote anything: duplicates only (of entries
    /// written ahead, not yet durable) say nothing about the disk.
    wrote: bool,
    written: Written,
    results: Vec<Appended>,
    parts: Vec<(usize, Reply)>,
}

type Reply = oneshot::Sender<Result<Vec<Appended>, Error>>;

/// Groups written ahead of the sync in progress: a bound on the work a
/// failed sync throws away.
const WRITTEN_AHEAD: usize = 2;

/// Starts the sequencer thread, and its syncer: the sequencer writes the
/// next group while the syncer makes the previous ones durable, so the
/// disk's sync time is not also time in which nothing is written.
pub fn spawn(store: Arc<dyn Storage>, max_events: usize) -> Handle {
    // Bounded: when storage falls behind, handlers wait here (backpressure).
    let (tx, mut rx) = mpsc::channel::<Request>(4096);
    let writable = Arc::new(Writable::new());
    let stopped = Arc::new(AtomicBool::new(false));
    let (to_sync, unsynced) = std::sync::mpsc::sync_channel::<Unsynced>(WRITTEN_AHEAD);
    let (status, sync_store) = (writable.clone(), store.clone());
    let syncer_stops = StopsWith {
        thread: "syncer",
        stopped: stopped.clone(),
    };
    std::thread::Builder::new()
        .name("syncer".into())
        .spawn(move || {
            let _stops = syncer_stops;
            while let Ok(u) = unsynced.recv() {
                let synced = sync_store.wait_durable(u.written);
                if synced.is_err() || u.wrote {
                    status.report(u.group, synced.is_ok());
                }
                answer(synced.map(|()| u.results), u.parts);
            }
        })
        .expect("spawning the syncer thread");
    let status = writable.clone();
    let sequencer_stops = StopsWith {
        thread: "sequencer",
        stopped: stopped.clone(),
    };
    std::thread::Builder::new()
        .name("sequencer".into())
        .spawn(move || {
            let _stops = sequencer_stops;
            let mut number = 0;
            while let Some(first) = rx.blocking_recv() {
                number += 1;
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
                if let Some(u) = write(&*store, number, group, events, &status) {
                    if let Err(e) = to_sync.send(u) {
                        // The syncer is gone (a panic): nothing more can be
                        // acknowledged, so stop taking batches too.
                        answer(
                            Err(aiaudit_store::Error::Io(std::io::Error::other(
                                "the log's syncer has stopped",
                            ))),
                            e.0.parts,
                        );
                        status.report(number, false);
                        break;
                    }
                }
            }
        })
        .expect("spawning the sequencer thread");
    Handle {
        tx,
        writable,
        stopped,
    }
}

/// Writes a group; answers at once when it failed or is durable already,
/// otherwise returns it for the syncer.
fn write(
    store: &dyn Storage,
    number: u64,
    group: Vec<Request>,
    events: usize,
    status: &Writable,
) -> Option<Unsynced> {
    let mut all = Vec::with_capacity(events);
    let mut parts = Vec::with_capacity(group.len());
    for r in group {
        parts.push((r.batch.len(), r.reply));
        all.extend(r.batch);
    }
    match store.append_unsynced(&all) {
        Ok((results, Some(written))) => Some(Unsynced {
            group: number,
            wrote: results.iter().any(|a| !a.duplicate),
            written,
            results,
            parts,
        }),
        Ok((results, None)) => {
            answer(Ok(results), parts);
            None
        }
        Err(e) => {
            status.report(number, false);
            answer(Err(e), parts);
            None
        }
    }
}

/// Answers each request of a group with its share of the results.
fn answer(results: aiaudit_store::Result<Vec<Appended>>, parts: Vec<(usize, Reply)>) {
    match results {
        Ok(results) => {
            let mut results = results.into_iter();
            for (n, reply) in parts {
                let _ = reply.send(Ok(results.by_ref().take(n).collect()));
            }
        }
        Err(e) => {
            let problem = Error::from_store(&e);
            for (_, reply) in parts {
                let _ = reply.send(Err(problem.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Writable;

    #[test]
    fn the_latest_group_decides_whether_storage_is_writable() {
        let w = Writable::new();
        assert!(w.get());
        // Group 3's write fails while group 2's sync is still running.
        w.report(3, false);
        w.report(2, true);
        assert!(
            !w.get(),
            "an earlier group's sync must not hide a later failure"
        );
        w.report(4, true);
        assert!(w.get());
        w.report(6, false);
        w.report(5, true);
        assert!(!w.get());
    }
}
