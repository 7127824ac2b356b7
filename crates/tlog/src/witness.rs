//! C2SP tlog-witness request and response bodies: what a log sends to
//! `POST <prefix>/add-checkpoint` and what a witness answers.

use base64::{engine::general_purpose::STANDARD, Engine as _};

use crate::hash::{malformed, Hash, Result};

/// The most consistency proof lines a client may send (tlog-witness).
pub const MAX_CONSISTENCY_PROOF_LINES: usize = 63;

/// The media type of a witness's 409 answer: the size it holds.
pub const TLOG_SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// An `add-checkpoint` request: the size the client believes the witness
/// holds, a consistency proof from it, and the signed checkpoint note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the witness's latest cosigned checkpoint for the origin.
    pub old_size: u64,
    /// RFC 6962 consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
}

/// Parses a decimal with no leading zeros (except "0").
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

/// Parses one line of canonical base64 holding a 32-byte hash.
pub(crate) fn parse_hash_line(line: &str) -> Option<Hash> {
    let raw = STANDARD.decode(line).ok()?;
    let hash: Hash = raw.try_into().ok()?;
    // Only the canonical encoding, so that a body has one meaning.
    (STANDARD.encode(hash) == line).then_some(hash)
}

/// Appends one base64 hash a line, an empty line, then the checkpoint: the
/// tail shared by add-checkpoint bodies and tlog-proofs.
pub(crate) fn push_proof_then_checkpoint(out: &mut String, proof: &[Hash], checkpoint: &str) {
    for h in proof {
        out.push_str(&STANDARD.encode(h));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(checkpoint);
}

/// Parses what [`push_proof_then_checkpoint`] writes: at most `max` hash
/// lines up to an empty line, then a non-empty checkpoint (returned as is).
pub(crate) fn proof_then_checkpoint<'a>(
    mut rest: &'a str,
    max: usize,
    what: &'static str,
) -> Result<(Vec<Hash>, &'a str)> {
    let mut proof = Vec::new();
    loop {
        let (line, after) = rest
            .split_once('\n')
            .ok_or_else(|| malformed(what, "no empty line before the checkpoint"))?;
        rest = after;
        if line.is_empty() {
            break;
        }
        if proof.len() == max {
            return Err(malformed(what, format!("more than {max} proof lines")));
        }
        proof.push(
            parse_hash_line(line)
                .ok_or_else(|| malformed(what, "a proof line is not a base64 hash"))?,
        );
    }
    if rest.is_empty() {
        return Err(malformed(what, "no checkpoint"));
    }
    Ok((proof, rest))
}

impl AddCheckpoint {
    /// The request body: `old <size>`, one base64 hash a line, an empty
    /// line, then the checkpoint.
    pub fn format(&self) -> String {
        let mut out = format!("old {}\n", self.old_size);
        push_proof_then_checkpoint(&mut out, &self.proof, &self.checkpoint);
        out
    }

    /// Parses a request body strictly. The checkpoint is returned verbatim,
    /// unchecked: opening it is the witness's next step.
    ///
    /// Errors: [`Error::Malformed`](crate::Error::Malformed) with what =
    /// "add-checkpoint body", among them more than 63 proof lines.
    pub fn parse(body: &str) -> Result<AddCheckpoint> {
        let bad = |d: &str| malformed("add-checkpoint body", d);
        let (first, rest) = body
            .split_once('\n')
            .ok_or_else(|| bad("no old size line"))?;
        let old_size = first
            .strip_prefix("old ")
            .and_then(parse_decimal)
            .ok_or_else(|| bad("the first line is not \"old <size>\""))?;
        let (proof, checkpoint) =
            proof_then_checkpoint(rest, MAX_CONSISTENCY_PROOF_LINES, "add-checkpoint body")?;
        Ok(AddCheckpoint {
            old_size,
            proof,
            checkpoint: checkpoint.to_string(),
        })
    }
}

/// Parses a witness's 409 body (`text/x.tlog.size`): a decimal and a newline.
pub fn parse_tlog_size(body: &str) -> Option<u64> {
    parse_decimal(body.strip_suffix('\n')?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_and_bad_ones_are_refused() {
        let req = AddCheckpoint {
            old_size: 5,
            proof: vec![[1; 32], [2; 32]],
            checkpoint: "o\n7\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— o AAAA\n".into(),
        };
        assert_eq!(AddCheckpoint::parse(&req.format()).unwrap(), req);
        for bad in [
            "",
            "old 5",
            "old 05\n\ncp\n",
            "old -1\n\ncp\n",
            "old 18446744073709551616\n\ncp\n",
            "olds 5\n\ncp\n",
            "old 5\nnot base64\n\ncp\n",
            "old 5\nAQ==\n\ncp\n",
            "old 5\n\n",
            "old 5\nAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n",
        ] {
            assert!(AddCheckpoint::parse(bad).is_err(), "{bad:?}");
        }
        let line = format!("{}\n", STANDARD.encode([3u8; 32]));
        let at = |n: usize| format!("old 1\n{}\ncp\n", line.repeat(n));
        assert!(AddCheckpoint::parse(&at(63)).is_ok());
        assert!(AddCheckpoint::parse(&at(64)).is_err());
    }

    #[test]
    fn tlog_size_bodies() {
        assert_eq!(parse_tlog_size("42\n"), Some(42));
        assert_eq!(parse_tlog_size("42"), None);
        assert_eq!(parse_tlog_size("042\n"), None);
    }
}
