//! Network faults between the agent and the ledger: a misbehaving proxy
//! refuses connections, cuts them after the request (so the ledger logged
//! a batch the agent never hears about), stalls them, or passes them on.
//! Every event must land in the log exactly once.

use crate::harness::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Copies one direction until EOF or error.
fn pipe(mut from: TcpStream, mut to: TcpStream, limit: Option<usize>) {
    let mut buf = [0u8; 16 * 1024];
    let mut sent = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // A cut connection: the answer is dropped part-way.
        if limit.is_some_and(|l| sent + n > l) {
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
            return;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n;
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// The faults the proxy deals, by kind: refused, cut after the request,
/// stalled, reset part-way through a later answer.
const FAULT_KINDS: [&str; 4] = ["refused", "cut after the request", "stalled", "reset later"];

/// Counts a proxy connection (or one direction of it) as open while alive.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(count: &Arc<AtomicUsize>) -> Open {
        count.fetch_add(1, Ordering::SeqCst);
        Open(count.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Copies client to server on a thread of its own, counted in `open`.
fn forward(from: TcpStream, to: TcpStream, open: &Arc<AtomicUsize>) {
    let guard = Open::new(open);
    std::thread::spawn(move || {
        let _guard = guard;
        pipe(from, to, None)
    });
}

/// Closes both ends after `life`, busy or idle: kept-alive connections
/// must break now and then too, or one good connection carries everything.
fn cut_after(client: &TcpStream, server: &TcpStream, life: Duration) {
    let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || {
        std::thread::sleep(life);
        let _ = c.shutdown(Shutdown::Both);
        let _ = s.shutdown(Shutdown::Both);
    });
}

/// Starts the proxy in front of `upstream`; returns its port and how many
/// faults of each kind it dealt.
fn faulty_proxy(upstream: u16) -> (u16, Arc<[AtomicUsize; 4]>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let faults: Arc<[AtomicUsize; 4]> = Arc::new(Default::default());
    // Connections the proxy has open (both directions finished: closed).
    let open = Arc::new(AtomicUsize::new(0));
    let o = open.clone();
    let f = faults.clone();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(client) = conn else { continue };
            let (f, o) = (f.clone(), o.clone());
            let guard = Open::new(&o);
            std::thread::spawn(move || {
                let _guard = guard;
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    return; // ledger down: the agent sees a refused/closed connection
                };
                match n % 5 {
                    // Refused: closed at once.
                    0 => {
                        f[0].fetch_add(1, Ordering::Relaxed);
                        let _ = client.shutdown(Shutdown::Both);
                    }
                    // Cut after the request went through: the answer never arrives.
                    1 => {
                        f[1].fetch_add(1, Ordering::Relaxed);
                        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                        forward(c2, s2, &o);
                        pipe(server, client, Some(16));
                    }
                    // Stalled for a while, then passed on (for a while).
                    2 => {
                        f[2].fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(1500));
                        cut_after(&client, &server, Duration::from_millis(400));
                        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                        forward(c2, s2, &o);
                        pipe(server, client, None);
                    }
                    // Reset part-way through a later answer (kept-alive
                    // connections too must break now and then). Answers of
                    // `acks=summary` are about 200 bytes with their headers:
                    // the first passes, the second is cut; and the connection
                    // is closed after a while in any case, or an idle one
                    // would stay open in the agent's pool.
                    3 => {
                        f[3].fetch_add(1, Ordering::Relaxed);
                        cut_after(&client, &server, Duration::from_secs(2));
                        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                        forward(c2, s2, &o);
                        pipe(server, client, Some(300));
                    }
                    _ => {
                        // Even a healthy connection is cut after a while
                        // (long enough for a slow build, e.g. one
                        // instrumented for coverage, to answer a batch).
                        cut_after(&client, &server, Duration::from_secs(2));
                        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                        forward(c2, s2, &o);
                        pipe(server, client, Some(64 * 1024));
                    }
                }
            });
        }
    });
    (port, faults, open)
}

#[test]
fn agent_delivers_exactly_once_through_a_faulty_network() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let upstream: u16 = server.url.rsplit(':').next().unwrap().parse().unwrap();
    let (proxy, faults, open) = faulty_proxy(upstream);
    let agent = start_agent(
        &format!("http://127.0.0.1:{proxy}"),
        &server.token,
        &dir.path().join("spool"),
    );
    let total = 3000u64;
    let c = client();
    for b in 0..total / 100 {
        let batch: Vec<Value> = (0..100)
            .map(|i| event(&format!("net-{}", b * 100 + i)))
            .collect();
        let r = agent
            .authorized(c.post(format!("{}/v1/events", agent.url)))
            .json(&batch)
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
        // Spread over about three seconds, so that the traffic outlives
        // connections and meets every kind of fault.
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let size = server.get_json("/v1/info")["sequenced_size"]
            .as_u64()
            .unwrap();
        let pending = agent.agent_status()["pending_batches"]
            .as_u64()
            .unwrap_or(1);
        if size >= total && pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "delivery stalled at {size} of {total}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Nothing more can arrive once the proxy holds no connection (a stalled
    // one forwards its request late) and the ledger has none in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    while open.load(Ordering::SeqCst) > 0 {
        assert!(Instant::now() < deadline, "proxy connections never closed");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.wait_idle();
    let size = server.get_json("/v1/info")["sequenced_size"]
        .as_u64()
        .unwrap();
    assert_eq!(size, total, "every event exactly once, none twice");
    server.wait_size(total);
    let ids = logged_ids(&server, total);
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len() as u64, total);
    // Each kind of fault happened, and at least one batch was logged while
    // its answer was lost: the agent sent it again and the ledger answered
    // with duplicates (the path exactly-once rests on).
    let dealt: Vec<usize> = faults.iter().map(|f| f.load(Ordering::Relaxed)).collect();
    for (kind, n) in FAULT_KINDS.iter().zip(&dealt) {
        assert!(
            *n >= 1,
            "the proxy never dealt a fault of kind {kind:?}: {dealt:?}"
        );
    }
    let status = agent.agent_status();
    assert!(
        status["duplicates"].as_u64().unwrap() >= 1,
        "no batch was logged with its answer lost and sent again: {status}"
    );
    println!(
        "network faults: {dealt:?} by kind, {} events re-sent and deduplicated, {total} delivered once",
        status["duplicates"]
    );
}
