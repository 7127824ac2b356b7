//! A day's backlog over a bad mobile link: `aiaudit agent` drains through a
//! throttling proxy (64 kbit/s each way, 300 ms latency, connections cut
//! mid-request) into the ledger, every event exactly once. CI runs 500
//! events; `AIAUDIT_SLOW_LINK_EVENTS=20000` is the figure in
//! docs/performance.md ("Slow links").

use crate::harness::*;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A link with a bandwidth each way shared by every connection over it, a
/// one-way latency, and a chance that a connection is cut part way through
/// what the client sends.
pub struct Link {
    bytes_per_sec: f64,
    latency: Duration,
    drop_chance: f64,
    up_free: Mutex<Instant>,
    down_free: Mutex<Instant>,
    /// Bytes that crossed the link (client to server, server to client).
    pub up: AtomicU64,
    pub down: AtomicU64,
    pub connections: AtomicU64,
    pub cut: AtomicU64,
    /// Cut the first connection whatever the chance: every run exercises it.
    cut_first: AtomicBool,
}

impl Link {
    pub fn new(kbit_per_sec: f64, latency: Duration, drop_chance: f64) -> Arc<Link> {
        Arc::new(Link {
            bytes_per_sec: kbit_per_sec * 1000.0 / 8.0,
            latency,
            drop_chance,
            up_free: Mutex::new(Instant::now()),
            down_free: Mutex::new(Instant::now()),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            cut: AtomicU64::new(0),
            cut_first: AtomicBool::new(true),
        })
    }

    /// Listens on loopback and relays each connection to `upstream`.
    pub fn serve(self: &Arc<Link>, upstream: SocketAddr) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let link = self.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let link = link.clone();
                std::thread::spawn(move || link.relay(client, upstream));
            }
        });
        addr
    }

    fn relay(self: Arc<Link>, client: TcpStream, upstream: SocketAddr) {
        let Ok(server) = TcpStream::connect(upstream) else {
            return;
        };
        self.connections.fetch_add(1, Ordering::Relaxed);
        // Connections are cut for sure until one has been: a first
        // connection that ended before its cut point (a short request)
        // used to leave a run with no cut at all, and the test failing.
        let cut_after = if self.cut_first.load(Ordering::Relaxed) || chance() < self.drop_chance {
            // Somewhere in the headers or the body of a request.
            Some(200 + (chance() * 30_000.0) as u64)
        } else {
            None
        };
        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let up = {
            let link = self.clone();
            std::thread::spawn(move || link.pump(client, server, true, cut_after))
        };
        self.pump(s2, c2, false, None);
        let _ = up.join();
    }

    /// Copies `from` to `to` at the link's pace; with `cut_after`, closes
    /// both ends once that many bytes went through.
    fn pump(&self, mut from: TcpStream, to: TcpStream, up: bool, cut_after: Option<u64>) {
        let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
        let writer = {
            let mut to = to.try_clone().unwrap();
            std::thread::spawn(move || {
                for (due, chunk) in rx {
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    if to.write_all(&chunk).is_err() {
                        break;
                    }
                }
                let _ = to.shutdown(Shutdown::Write);
            })
        };
        let mut sent = 0u64;
        let mut buf = [0u8; 1400];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let n = match cut_after {
                Some(limit) if sent + n as u64 >= limit => (limit - sent) as usize,
                _ => n,
            };
            // The link carries one chunk at a time: this one starts when
            // the link is free, arrives a latency after it is through.
            let airtime = Duration::from_secs_f64(n as f64 / self.bytes_per_sec);
            let (start, done) = {
                let mut free = if up { &self.up_free } else { &self.down_free }
                    .lock()
                    .unwrap();
                let start = (*free).max(Instant::now());
                *free = start + airtime;
                (start, *free)
            };
            let now = Instant::now();
            if start > now {
                std::thread::sleep(start - now);
            }
            if up { &self.up } else { &self.down }.fetch_add(n as u64, Ordering::Relaxed);
            sent += n as u64;
            if tx.send((done + self.latency, buf[..n].to_vec())).is_err() {
                break;
            }
            if cut_after.is_some_and(|limit| sent >= limit) {
                self.cut.fetch_add(1, Ordering::Relaxed);
                self.cut_first.store(false, Ordering::Relaxed);
                drop(tx);
                let _ = writer.join();
                let _ = from.shutdown(Shutdown::Both);
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
        drop(tx);
        let _ = writer.join();
    }
}

/// A number in [0, 1) (not for anything secret).
fn chance() -> f64 {
    (uuid::Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0
}

#[test]
fn a_backlog_drains_over_a_slow_lossy_link_exactly_once() {
    let events: u64 = std::env::var("AIAUDIT_SLOW_LINK_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let ledger_dir = tempfile::tempdir().unwrap();
    let ledger = Server::start(ledger_dir.path());
    let upstream: SocketAddr = ledger.url.trim_start_matches("http://").parse().unwrap();
    let link = Link::new(64.0, Duration::from_millis(300), 0.05);
    let proxy = link.serve(upstream);

    // A day of one device's events, already in the agent's spool: written
    // while the agent's link to the ledger was down.
    let spool = tempfile::tempdir().unwrap();
    let dead = free_port();
    let agent = start_agent(
        &format!("http://127.0.0.1:{dead}"),
        &ledger.token,
        spool.path(),
    );
    let dump = aiaudit(&[
        "bench",
        "--content",
        "ai",
        "--dump",
        "--events",
        &events.to_string(),
    ]);
    assert!(dump.status.success());
    let lines: Vec<&[u8]> = dump
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len() as u64, events);
    let json_bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    for chunk in lines.chunks(100) {
        let r = agent.post("/v1/events", "application/x-ndjson", chunk.join(&b'\n'));
        assert_eq!(r.status(), 202);
    }
    agent.stop();

    // The link comes back, but a bad one.
    let started = Instant::now();
    let agent = start_agent(&format!("http://{proxy}"), &ledger.token, spool.path());
    let deadline = started + Duration::from_secs(events * 60 / 100 + 60);
    while agent.agent_status()["pending_batches"] != 0 {
        assert!(
            Instant::now() < deadline,
            "the agent still has batches pending: {}",
            agent.agent_status()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = started.elapsed();
    ledger.wait_size(events);
    let ids = logged_ids(&ledger, events);
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(
        (ids.len(), unique.len()),
        (events as usize, events as usize)
    );
    assert_eq!(ledger.get_json("/v1/info")["sequenced_size"], events);

    let (up, down) = (
        link.up.load(Ordering::Relaxed),
        link.down.load(Ordering::Relaxed),
    );
    let cut = link.cut.load(Ordering::Relaxed);
    assert!(cut >= 1, "no connection was cut");
    let status = agent.agent_status();
    println!(
        "slow link: {events} events ({json_bytes} bytes of JSON) in {:.1} s; {up} bytes up ({:.1} % of the JSON), {down} down; \
         {} connections, {cut} cut mid-request; agent: {status}",
        took.as_secs_f64(),
        up as f64 * 100.0 / json_bytes as f64,
        link.connections.load(Ordering::Relaxed),
    );
    // Compressed: each request a small part of its JSON, and the link
    // carried less than the JSON even with what cuts made it send twice
    // (a cut resends the requests in flight after it: 22-34 % of the JSON
    // with one or two cuts).
    let (body, wire) = (
        status["body_bytes"].as_u64().unwrap(),
        status["wire_bytes"].as_u64().unwrap(),
    );
    assert!(wire * 3 < body, "{wire} bytes sent for {body} of JSON");
    assert!(up < json_bytes as u64, "{up} bytes up for {json_bytes}");
}
