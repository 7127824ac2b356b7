//! How `dictionaries/openings-1.zdict` was made (docs/format.md, "The
//! openings dictionary"). The file in the repository is the dictionary;
//! this only records its making, since the docs it learns from change.
//!
//! ```sh
//! cargo run -p aiaudit-event --example train_openings_dictionary -- docs /tmp/openings.zdict
//! ```
//!
//! It learns from the project's own English docs, shaped as openings of AI
//! events (a salt, then the event's sealed members), and never from the
//! load generator's text, so the figures measured with it are not flattered.

use std::path::Path;

const DICTIONARY_SIZE: usize = 4096;
const ACTIONS: [&str; 4] = [
    "model.invoke",
    "tool.call",
    "agent.decision",
    "human.review",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (docs, out) = match &args[..] {
        [_, docs, out] => (Path::new(docs), Path::new(out)),
        _ => return Err("usage: train_openings_dictionary <docs dir> <output file>".into()),
    };
    let mut names: Vec<_> = std::fs::read_dir(docs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    names.sort();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut samples = Vec::new();
    for name in names {
        let text: String = std::fs::read_to_string(&name)?
            .chars()
            .map(|c| if c == '\n' { ' ' } else { c })
            .collect();
        let words: Vec<&str> = text.split(' ').filter(|w| !w.is_empty()).collect();
        for chunk in words.chunks(110) {
            let n = samples.len();
            // A random salt opens every opening, as in a sealed entry.
            let mut opening: Vec<u8> = (0..4).flat_map(|_| next().to_le_bytes()).collect();
            let event = serde_json::json!({
                "event": {
                    "action": ACTIONS[n % ACTIONS.len()],
                    "actor": {"id": format!("user-{}", next() % 1000), "type": "human"},
                    "attributes": {"prompt": chunk[..chunk.len() / 3].join(" "),
                                   "output": chunk[chunk.len() / 3..].join(" ")},
                },
                "v": 3,
            });
            opening.extend(serde_json::to_vec(&event)?);
            samples.push(opening);
        }
    }
    let mut dictionary = zstd::dict::from_samples(&samples, DICTIONARY_SIZE)?;
    // A fixed id (the header's bytes 4..8, little-endian) instead of the
    // trainer's random one; frames do not name it (the entry's flags do).
    dictionary[4..8].copy_from_slice(&1u32.to_le_bytes());
    std::fs::write(out, &dictionary)?;
    println!("{} samples, {} bytes", samples.len(), dictionary.len());
    Ok(())
}
