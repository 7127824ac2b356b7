//! Compresses each line of NDJSON files on its own with the openings
//! dictionary, as sealing compresses each event's opening, under several
//! zstd settings; prints the ratio and the time per event (best of three).
//!
//! ```sh
//! target/release/aiaudit bench --dump --events 20000 --content prose > /tmp/prose.ndjson
//! target/release/aiaudit bench --dump --events 20000 --content ai > /tmp/ai.ndjson
//! cargo run --release --manifest-path docs/measurements/zstd-settings/Cargo.toml -- /tmp/prose.ndjson /tmp/ai.ndjson
//! ```

use std::time::Instant;
use zstd::stream::raw::CParameter as P;
use zstd::zstd_safe::{DictAttachPref, ParamSwitch};

const DICTIONARY: &[u8] = include_bytes!("../../../../crates/event/dictionaries/openings-1.zdict");

fn main() {
    let settings: Vec<(&str, Vec<P>)> = vec![
        ("level 1 (sealing today)", vec![]),
        (
            "level 1, target length 2",
            vec![
                P::TargetLength(2),
                P::LiteralCompressionMode(ParamSwitch::Enable),
            ],
        ),
        (
            "level 1, target length 3",
            vec![
                P::TargetLength(3),
                P::LiteralCompressionMode(ParamSwitch::Enable),
            ],
        ),
        (
            "level 1, target length 4",
            vec![
                P::TargetLength(4),
                P::LiteralCompressionMode(ParamSwitch::Enable),
            ],
        ),
        (
            "level 1, target length 3, min match 5",
            vec![
                P::TargetLength(3),
                P::MinMatch(5),
                P::LiteralCompressionMode(ParamSwitch::Enable),
            ],
        ),
        (
            "level 1, target length 3, hash log 12",
            vec![
                P::TargetLength(3),
                P::HashLog(12),
                P::LiteralCompressionMode(ParamSwitch::Enable),
            ],
        ),
        ("level 1, min match 6", vec![P::MinMatch(6)]),
        ("level 1, hash log 10", vec![P::HashLog(10)]),
        (
            "level 1, hash log 10, dictionary copied",
            vec![
                P::HashLog(10),
                P::ForceAttachDict(DictAttachPref::ForceCopy),
            ],
        ),
        ("level -1", vec![P::CompressionLevel(-1)]),
    ];
    for file in std::env::args().skip(1) {
        let text = std::fs::read_to_string(&file).expect("an NDJSON file");
        let events: Vec<&[u8]> = text.lines().map(str::as_bytes).collect();
        let raw: usize = events.iter().map(|e| e.len()).sum();
        for (name, params) in &settings {
            let mut c = zstd::bulk::Compressor::with_dictionary(1, DICTIONARY)
                .expect("the dictionary loads");
            c.set_parameter(P::DictIdFlag(false))
                .expect("a known parameter");
            for p in params {
                c.set_parameter(p.clone()).expect("a known parameter");
            }
            let (mut best, mut out) = (f64::MAX, 0);
            for _ in 0..3 {
                let t = Instant::now();
                out = events
                    .iter()
                    .map(|e| c.compress(e).expect("compresses").len())
                    .sum();
                best = best.min(t.elapsed().as_secs_f64());
            }
            println!(
                "{file}\t{name}\tratio {:.3}\t{:.2} us per event",
                raw as f64 / out as f64,
                best * 1e6 / events.len() as f64
            );
        }
    }
}
