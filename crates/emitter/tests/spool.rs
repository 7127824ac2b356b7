//! Integration tests of the offline spool: ordering, recovery of torn tails,
//! space limits, a model-based property test and a SIGKILL crash test.

use aiaudit_emitter::{Spool, SpoolError};
use proptest::prelude::*;
use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const SEG: u64 = 256;
const BIG: u64 = 1 << 30;

fn rec(i: usize) -> Vec<u8> {
    format!("record {i} ").repeat(1 + i % 5).into_bytes()
}

/// What a record takes on disk: its 8-byte header and its zstd frame
/// (level 3, docs/emitters.md "Spool format").
fn framed(record: &[u8]) -> u64 {
    (zstd::bulk::compress(record, 3).unwrap().len() + 8) as u64
}

/// `len` bytes that do not compress.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn open(dir: &Path) -> Spool {
    Spool::open_with_segment_size(dir, BIG, SEG).unwrap()
}

fn all(s: &mut Spool) -> Vec<Vec<u8>> {
    s.peek(usize::MAX, usize::MAX).unwrap()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with("seg-") && n.ends_with(".log")
        })
        .collect();
    v.sort();
    v
}

fn segment_bytes_on_disk(dir: &Path) -> u64 {
    segments(dir)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn order_across_segments_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    let mut next = 0;
    for batch in 1..=12 {
        let recs: Vec<Vec<u8>> = (next..next + batch).map(rec).collect();
        let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
        s.append(&refs).unwrap();
        next += batch;
    }
    assert!(segments(dir.path()).len() > 5, "test must span segments");
    assert_eq!(s.pending_records(), next as u64);

    // Deliver in windows of varying size, reopening now and then.
    let mut delivered = 0;
    let mut round = 0;
    while delivered < next {
        let window = s.peek(1 + round % 7, 200).unwrap();
        assert!(!window.is_empty());
        assert_eq!(
            s.peek(1 + round % 7, 200).unwrap(),
            window,
            "peek is stable"
        );
        for (k, r) in window.iter().enumerate() {
            assert_eq!(*r, rec(delivered + k));
        }
        s.ack(window.len()).unwrap();
        delivered += window.len();
        assert_eq!(s.pending_records(), (next - delivered) as u64);
        assert_eq!(s.disk_bytes(), segment_bytes_on_disk(dir.path()));
        if round % 3 == 0 {
            drop(s);
            s = open(dir.path());
            assert_eq!(s.pending_records(), (next - delivered) as u64);
        }
        round += 1;
    }
    assert!(s.peek(10, 10).unwrap().is_empty());
    assert_eq!(s.pending_bytes(), 0);
}

#[test]
fn acked_records_never_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    for i in 0..40 {
        s.append(&[&rec(i)]).unwrap();
    }
    s.peek(15, usize::MAX).unwrap();
    s.ack(15).unwrap();
    s.ack(5).unwrap(); // beyond the peek window
    drop(s);
    let mut s = open(dir.path());
    assert_eq!(all(&mut s), (20..40).map(rec).collect::<Vec<_>>());
    assert_eq!(
        s.pending_bytes(),
        (20..40).map(|i| framed(&rec(i))).sum::<u64>()
    );
    s.ack(20).unwrap();
    drop(s);
    let mut s = open(dir.path());
    assert!(all(&mut s).is_empty());
    assert_eq!(s.pending_records(), 0);
    assert_eq!(s.pending_bytes(), 0);
}

/// Damages the end of the last segment with `damage`, reopens, and checks
/// that exactly the records before the damaged one survive and that the
/// spool keeps working.
fn torn_tail(damage: impl Fn(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    for i in 0..10 {
        s.append(&[&rec(i)]).unwrap();
    }
    s.peek(2, usize::MAX).unwrap();
    s.ack(2).unwrap();
    drop(s);
    let last = segments(dir.path()).pop().unwrap();
    damage(&last);
    let mut s = open(dir.path());
    let got = all(&mut s);
    assert_eq!(s.pending_records(), got.len() as u64);
    assert_eq!(s.disk_bytes(), segment_bytes_on_disk(dir.path()));
    s.append(&[b"after"]).unwrap();
    drop(s);
    let mut s = open(dir.path());
    let mut want = got.clone();
    want.push(b"after".to_vec());
    assert_eq!(all(&mut s), want);
    // Report what survived so each case can check it.
    assert_eq!(got[..], (2..2 + got.len()).map(rec).collect::<Vec<_>>()[..]);
    assert!(got.len() >= 7, "only the damaged record may go");
    TORN_SURVIVORS.with(|c| c.set(got.len()));
}

thread_local! {
    static TORN_SURVIVORS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[test]
fn torn_tail_garbage_is_cut() {
    torn_tail(|p| append_bytes(p, &[0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03]));
    assert_eq!(TORN_SURVIVORS.with(|c| c.get()), 8);
    torn_tail(|p| append_bytes(p, &[0u8; 4096]));
    assert_eq!(TORN_SURVIVORS.with(|c| c.get()), 8);
}

#[test]
fn torn_tail_partial_record_is_cut() {
    torn_tail(|p| {
        let payload = b"a record that was being written";
        let mut framed = (payload.len() as u32).to_le_bytes().to_vec();
        framed.extend(crc32fast::hash(payload).to_le_bytes());
        framed.extend(payload);
        append_bytes(p, &framed[..framed.len() - 5]);
    });
    assert_eq!(TORN_SURVIVORS.with(|c| c.get()), 8);
    torn_tail(|p| append_bytes(p, &[40, 0, 0]));
    assert_eq!(TORN_SURVIVORS.with(|c| c.get()), 8);
}

#[test]
fn torn_tail_bad_checksum_is_cut() {
    torn_tail(|p| {
        let mut bytes = fs::read(p).unwrap();
        *bytes.last_mut().unwrap() ^= 0x20;
        fs::write(p, bytes).unwrap();
    });
    assert_eq!(TORN_SURVIVORS.with(|c| c.get()), 7);
}

#[test]
fn full_then_space_freed_by_acks() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 1000;
    let mut s = Spool::open_with_segment_size(dir.path(), limit, 100).unwrap();
    let r = noise(42, 1);
    let f = framed(&r);
    assert!(f > 50, "{f}");
    let mut appended = 0;
    let err = loop {
        match s.append(&[&r]) {
            Ok(()) => appended += 1,
            Err(e) => break e,
        }
        assert!(appended <= 20);
    };
    assert!(
        matches!(err, SpoolError::Full { used, limit: 1000 } if used + f > limit),
        "{err}"
    );
    assert!(s.disk_bytes() <= limit);
    assert_eq!(s.pending_records(), appended);
    // Acking a few segments' worth frees space.
    s.peek(6, usize::MAX).unwrap();
    s.ack(6).unwrap();
    assert!(s.disk_bytes() + f <= limit);
    s.append(&[&r]).unwrap();
    s.append(&[&r]).unwrap();
    assert_eq!(s.disk_bytes(), segment_bytes_on_disk(dir.path()));
    assert!(s.disk_bytes() <= limit);
    // Everything delivered: the whole limit is available again.
    let n = s.pending_records() as usize;
    s.ack(n).unwrap();
    for _ in 0..limit / f {
        s.append(&[&r]).unwrap();
    }
    assert!(s.disk_bytes() <= limit);
    assert!(matches!(s.append(&[&r]), Err(SpoolError::Full { .. })));
}

#[test]
fn append_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open_with_segment_size(dir.path(), 500, 1 << 20).unwrap();
    s.append(&[b"kept"]).unwrap();
    let before = (s.pending_records(), s.disk_bytes());
    let too_big = noise(493, 2);
    assert!(matches!(
        s.append(&[b"x", &too_big, b"y"]),
        Err(SpoolError::TooLarge(493))
    ));
    let r = noise(92, 3);
    let batch: Vec<&[u8]> = vec![&r; 5];
    assert!(5 * framed(&r) > 500 - framed(b"kept"));
    assert!(matches!(s.append(&batch), Err(SpoolError::Full { .. })));
    assert_eq!((s.pending_records(), s.disk_bytes()), before);
    assert_eq!(segment_bytes_on_disk(dir.path()), before.1);
    drop(s);
    let mut s = Spool::open_with_segment_size(dir.path(), 500, 1 << 20).unwrap();
    assert_eq!(all(&mut s), vec![b"kept".to_vec()]);
}

#[test]
fn refuses_other_formats() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("FORMAT"), "aiaudit-spool 9\n").unwrap();
    let err = Spool::open(dir.path(), BIG).expect_err("must refuse");
    assert!(matches!(err, SpoolError::Corrupt { .. }), "{err}");
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Vec<u8>>),
    Peek(usize, usize),
    Ack(usize),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(prop::collection::vec(any::<u8>(), 1..60), 1..5)
            .prop_map(Op::Append),
        3 => (0usize..6, 0usize..150).prop_map(|(r, b)| Op::Peek(r, b)),
        3 => (0usize..8).prop_map(Op::Ack),
        1 => Just(Op::Reopen),
    ]
}

fn model_peek(model: &VecDeque<Vec<u8>>, max_records: usize, max_bytes: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for r in model {
        if out.len() == max_records || (!out.is_empty() && bytes + r.len() > max_bytes) {
            break;
        }
        bytes += r.len();
        out.push(r.clone());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matches_a_queue_model(ops in prop::collection::vec(op(), 1..80)) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open_with_segment_size(dir.path(), BIG, 128).unwrap();
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        for op in ops {
            match op {
                Op::Append(recs) => {
                    let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
                    s.append(&refs).unwrap();
                    model.extend(recs);
                }
                Op::Peek(r, b) => {
                    prop_assert_eq!(s.peek(r, b).unwrap(), model_peek(&model, r, b));
                }
                Op::Ack(k) => {
                    // Sometimes more than pending, which must fail and change nothing.
                    let n = k % (model.len() + 2);
                    if n > model.len() {
                        prop_assert!(s.ack(n).is_err());
                    } else {
                        s.ack(n).unwrap();
                        model.drain(..n);
                    }
                }
                Op::Reopen => {
                    drop(s);
                    s = Spool::open_with_segment_size(dir.path(), BIG, 128).unwrap();
                }
            }
            prop_assert_eq!(s.pending_records(), model.len() as u64);
            prop_assert_eq!(
                s.pending_bytes(),
                model.iter().map(|r| framed(r)).sum::<u64>()
            );
            prop_assert_eq!(s.disk_bytes(), segment_bytes_on_disk(dir.path()));
        }
        prop_assert_eq!(all(&mut s), model.iter().cloned().collect::<Vec<_>>());
    }
}

const CRASH_DIR_ENV: &str = "AIAUDIT_SPOOL_CRASH_CHILD_DIR";

fn crash_record(i: u64) -> Vec<u8> {
    format!("crash record {i};")
        .repeat(1 + (i % 7) as usize)
        .into_bytes()
}

fn crash_record_index(r: &[u8]) -> u64 {
    let s = std::str::from_utf8(r).expect("utf-8 record");
    let i: u64 = s
        .strip_prefix("crash record ")
        .and_then(|t| t.split(';').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected record {s:?}"));
    assert_eq!(r, crash_record(i), "record {i} is damaged");
    i
}

/// Not a test on its own: the child process of `survives_sigkill`. It
/// appends batches forever, delivering and acknowledging some, and reports
/// each operation only after it returned Ok.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
        return;
    };
    let mut s = Spool::open_with_segment_size(Path::new(&dir), BIG, 4096).unwrap();
    let mut out = std::io::stdout().lock();
    let mut next = 0u64;
    let mut acked = 0u64;
    for round in 0u64.. {
        let recs: Vec<Vec<u8>> = (next..next + 1 + round % 3).map(crash_record).collect();
        let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
        s.append(&refs).unwrap();
        next += recs.len() as u64;
        writeln!(out, "appended {}", next - 1).unwrap();
        out.flush().unwrap();
        if round % 4 == 3 {
            let window = s.peek(4, usize::MAX).unwrap();
            for (k, r) in window.iter().enumerate() {
                assert_eq!(crash_record_index(r), acked + k as u64);
            }
            writeln!(out, "acking {}", acked + window.len() as u64).unwrap();
            out.flush().unwrap();
            s.ack(window.len()).unwrap();
            acked += window.len() as u64;
            writeln!(out, "acked {acked}").unwrap();
            out.flush().unwrap();
        }
    }
}

#[test]
fn survives_sigkill() {
    for run in 0..3u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CRASH_DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait for the child to get going (it may be slow to start on a busy
        // machine), then let it run and kill it at an arbitrary moment.
        let mut lines = Vec::new();
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("child never reported an append");
            let started = line.starts_with("appended ");
            lines.push(line);
            if started {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(150 + 50 * run));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());

        // Only complete lines count: the last one may have been cut.
        let (mut last_appended, mut acked, mut acking) = (None, 0u64, 0u64);
        for line in &lines {
            let Some((what, n)) = line.split_once(' ') else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "appended" => last_appended = Some(n),
                "acked" => acked = n,
                "acking" => acking = n,
                _ => {}
            }
        }
        let last_appended = last_appended.unwrap();

        let mut s = Spool::open_with_segment_size(dir.path(), BIG, 4096).unwrap();
        let recs = all(&mut s);
        assert_eq!(s.pending_records(), recs.len() as u64);
        let indexes: Vec<u64> = recs.iter().map(|r| crash_record_index(r)).collect();
        // The first record left is between the last ack that returned Ok and
        // the last one attempted (which may or may not have become durable).
        let first = indexes.first().copied().unwrap_or(acking);
        assert!(
            (acked..=acking.max(acked)).contains(&first),
            "run {run}: first record {first}, acks: {acked} done, {acking} attempted"
        );
        for (k, &i) in indexes.iter().enumerate() {
            assert_eq!(
                i,
                first + k as u64,
                "run {run}: records out of order or missing"
            );
        }
        assert!(
            first + indexes.len() as u64 > last_appended,
            "run {run}: records up to {last_appended} were reported appended, spool ends at {:?}",
            indexes.last()
        );
        eprintln!(
            "run {run}: child reported {} appended, {acked} acked; spool holds {first}..{}",
            last_appended + 1,
            first + indexes.len() as u64
        );
        // The spool keeps working after the crash.
        s.append(&[b"after the crash"]).unwrap();
        s.ack(recs.len()).unwrap();
        assert_eq!(all(&mut s), vec![b"after the crash".to_vec()]);
    }
}

#[test]
fn a_directory_in_use_is_refused_until_its_spool_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = open(dir.path());
    first.append(&[&rec(1)]).unwrap();
    match Spool::open(dir.path(), 1 << 20) {
        Err(SpoolError::InUse { dir: named }) => {
            assert_eq!(named, dir.path().display().to_string())
        }
        other => panic!("a second spool on a directory in use: {other:?}"),
    }
    drop(first);
    let mut again = open(dir.path());
    assert_eq!(all(&mut again), vec![rec(1)]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("LOCK"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn peek_after_skips_records_in_flight_and_ack_still_counts_from_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open_with_segment_size(dir.path(), BIG, SEG).unwrap();
    for i in 0..6 {
        s.append(&[&rec(i)]).unwrap();
    }
    assert_eq!(
        s.peek_after(2, 2, usize::MAX).unwrap(),
        vec![rec(2), rec(3)]
    );
    assert!(s.peek_after(6, 2, usize::MAX).unwrap().is_empty());
    assert!(s.peek_after(60, 2, usize::MAX).unwrap().is_empty());
    // A byte limit still lets one record through.
    assert_eq!(s.peek_after(4, 5, 1).unwrap(), vec![rec(4)]);
    s.ack(1).unwrap();
    assert_eq!(all(&mut s), (1..6).map(rec).collect::<Vec<_>>());
    s.peek_after(3, 1, usize::MAX).unwrap();
    s.ack(2).unwrap();
    drop(s);
    let mut s = open(dir.path());
    assert_eq!(all(&mut s), (3..6).map(rec).collect::<Vec<_>>());
}
