//! Time per new data subject through `Keyring::choose`, 100 subjects a call.
use aiaudit_keyring::{Keyring, LocalMasterKey, MasterKeySource};
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().unwrap());
    let dir = std::env::args().nth(2).unwrap_or("/tmp/choose-cost".into());
    if n == 0 {
        reopen(std::path::Path::new(&dir));
        return;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir = std::path::Path::new(&dir);
    let (m, _) = LocalMasterKey::load(MasterKeySource::File(dir.join("master.key")), true).unwrap();
    let ring = Keyring::open(dir, Arc::new(m)).unwrap();
    // `families` as the third argument: keys derived from subject key
    // families (their members noted as keys are handed out).
    let families = std::env::args().nth(3).as_deref() == Some("families");
    ring.set_families(families).unwrap();
    let start = Instant::now();
    let mut last = Instant::now();
    for round in 0..n / 100 {
        let subjects: Vec<String> = (0..100)
            .map(|i| format!("subject-{}", round * 100 + i))
            .collect();
        let wants: Vec<(&str, Option<&str>)> =
            subjects.iter().map(|s| ("t", Some(s.as_str()))).collect();
        ring.choose(&wants).unwrap();
        if families {
            // As the ledger says of its log after each batch.
            ring.members_cover(((round + 1) * 100) as u64);
        }
        if (round + 1) % 1000 == 0 {
            println!(
                "{} subjects: {:.2} us/subject over the last 100k",
                (round + 1) * 100,
                last.elapsed().as_secs_f64() * 1e6 / 100_000.0
            );
            last = Instant::now();
        }
    }
    println!(
        "total {:.2} us/subject",
        start.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let t = Instant::now();
    drop(ring);
    println!("closed in {:.3} s", t.elapsed().as_secs_f64());
    reopen(dir);
}

#[allow(dead_code)]
fn reopen(dir: &std::path::Path) {
    let t = Instant::now();
    let (m, _) = LocalMasterKey::load(MasterKeySource::File(dir.join("master.key")), true).unwrap();
    let ring = Keyring::open(dir, Arc::new(m)).unwrap();
    println!(
        "reopened in {:.3} s ({} subject keys)",
        t.elapsed().as_secs_f64(),
        ring.stats().subject_keys
    );
}
