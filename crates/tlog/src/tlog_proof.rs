//! C2SP tlog-proof (`c2sp.org/tlog-proof@v1`): one entry's inclusion proof
//! and the (co)signed checkpoint it leads to, verifiable offline.

use base64::{engine::general_purpose::STANDARD, Engine as _};

use crate::hash::{malformed, Hash, Result};
use crate::witness::{parse_decimal, proof_then_checkpoint, push_proof_then_checkpoint};

/// The first line of every proof.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// The most inclusion proof lines accepted (a tree of 2^64 leaves).
const MAX_PROOF_LINES: usize = 64;

/// A parsed tlog-proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Optional opaque data, not authenticated by the proof itself (this
    /// log puts the entry there so the leaf hash can be recomputed).
    pub extra: Option<Vec<u8>>,
    /// Zero-based index of the entry.
    pub index: u64,
    /// RFC 6962 inclusion proof, the leaf's sibling first.
    pub proof: Vec<Hash>,
    /// The checkpoint note, verbatim, cosignatures included.
    pub checkpoint: String,
}

impl TlogProof {
    /// The text form (to be stored with the extension `.tlog-proof`).
    pub fn format(&self) -> String {
        let mut out = format!("{TLOG_PROOF_HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str("extra ");
            out.push_str(&STANDARD.encode(extra));
            out.push('\n');
        }
        out.push_str(&format!("index {}\n", self.index));
        push_proof_then_checkpoint(&mut out, &self.proof, &self.checkpoint);
        out
    }

    /// Parses the text form strictly; the checkpoint is returned unchecked.
    ///
    /// Errors: [`Error::Malformed`](crate::Error::Malformed) with what = "tlog-proof".
    pub fn parse(text: &str) -> Result<TlogProof> {
        let bad = |d: &str| malformed("tlog-proof", d);
        let mut rest = text
            .strip_prefix(TLOG_PROOF_HEADER)
            .and_then(|r| r.strip_prefix('\n'))
            .ok_or_else(|| bad("does not start with c2sp.org/tlog-proof@v1"))?;
        let mut next = || -> Result<&str> {
            let (line, after) = rest
                .split_once('\n')
                .ok_or_else(|| bad("ends before the checkpoint"))?;
            rest = after;
            Ok(line)
        };
        let mut line = next()?;
        let mut extra = None;
        if let Some(b64) = line.strip_prefix("extra ") {
            extra = Some(
                STANDARD
                    .decode(b64)
                    .map_err(|_| bad("the extra line is not base64"))?,
            );
            line = next()?;
        }
        let index = line
            .strip_prefix("index ")
            .and_then(parse_decimal)
            .ok_or_else(|| bad("no \"index <n>\" line"))?;
        let (proof, checkpoint) = proof_then_checkpoint(rest, MAX_PROOF_LINES, "tlog-proof")?;
        Ok(TlogProof {
            extra,
            index,
            proof,
            checkpoint: checkpoint.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_round_trip_and_bad_ones_are_refused() {
        let p = TlogProof {
            extra: Some(b"entry 5".to_vec()),
            index: 5,
            proof: vec![[1; 32]],
            checkpoint: "o\n7\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— o AAAA\n".into(),
        };
        let text = p.format();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra ZW50cnkgNQ==\nindex 5\n"));
        assert_eq!(TlogProof::parse(&text).unwrap(), p);
        let bare = TlogProof { extra: None, ..p };
        assert_eq!(TlogProof::parse(&bare.format()).unwrap(), bare);
        for bad in [
            "",
            "c2sp.org/tlog-proof@v1\n",
            "c2sp.org/tlog-proof@v1\nindex x\n\ncp\n",
            "c2sp.org/tlog-proof@v1\nextra !!\nindex 0\n\ncp\n",
            "c2sp.org/tlog-proof@v1\nindex 0\n\n",
            "c2sp.org/tlog-proof@v2\nindex 0\n\ncp\n",
        ] {
            assert!(TlogProof::parse(bad).is_err(), "{bad:?}");
        }
    }
}
