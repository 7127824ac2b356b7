//! C2SP tlog-checkpoint bodies: the text a log signs to commit to a tree.

use base64::{engine::general_purpose::STANDARD, Engine as _};

use crate::hash::{malformed, Hash, Result};

/// A checkpoint: the log's origin line, a tree size and root hash, and
/// optional extension lines.
///
/// This is only the body. Signing and opening it are done with
/// [`sign_note`](crate::sign_note) and [`open_note`](crate::open_note).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, e.g. "example.test/log". Non-empty, one line.
    pub origin: String,
    /// Number of entries in the tree.
    pub size: u64,
    /// Merkle tree hash of the first `size` entries.
    pub root: Hash,
    /// Extra lines after the root, each non-empty, without newlines.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// Returns the body text: `"<origin>\n<size>\n<base64 root>\n"` followed by
    /// each extension line and "\n".
    ///
    /// The fields are not validated here: an origin or extension containing
    /// a newline gives a body that [`Checkpoint::parse_body`] rejects.
    pub fn body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for ext in &self.extensions {
            body.push_str(ext);
            body.push('\n');
        }
        body
    }

    /// Parses a checkpoint body strictly, so that each checkpoint has exactly
    /// one encoding: non-empty origin, decimal size without leading zeros
    /// (except "0"), canonical padded base64 of a 32-byte root, non-empty
    /// extension lines, and a final newline.
    ///
    /// Errors: [`Error::Malformed`](crate::Error::Malformed) with what =
    /// "checkpoint".
    pub fn parse_body(body: &str) -> Result<Checkpoint> {
        let bad = |detail: &str| malformed("checkpoint", detail);
        let text = body
            .strip_suffix('\n')
            .ok_or_else(|| bad("does not end with a newline"))?;
        let mut lines = text.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(bad("empty origin line"));
        }
        let size = lines.next().ok_or_else(|| bad("missing size line"))?;
        let canonical = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        if !canonical {
            return Err(bad("size is not a canonical decimal number"));
        }
        let size: u64 = size.parse().map_err(|_| bad("size out of range"))?;
        let root_b64 = lines.next().ok_or_else(|| bad("missing root hash line"))?;
        let root: Hash = STANDARD
            .decode(root_b64)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| bad("root hash is not base64 of 32 bytes"))?;
        // Base64 decoders can accept several spellings of the same bytes.
        if STANDARD.encode(root) != root_b64 {
            return Err(bad("root hash is not canonical base64"));
        }
        let mut extensions = Vec::new();
        for ext in lines {
            if ext.is_empty() {
                return Err(bad("empty extension line"));
            }
            extensions.push(ext.to_string());
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    const BODY: &str = "example.test/log\n1000\nNGxrnLicS3b6ydyyDNqG46AcCldBfBOQKOrNRTj96Vs=\n";

    #[test]
    fn round_trip() {
        let c = Checkpoint::parse_body(BODY).unwrap();
        assert_eq!(c.origin, "example.test/log");
        assert_eq!(c.size, 1000);
        assert_eq!(c.root[0], 0x34);
        assert!(c.extensions.is_empty());
        assert_eq!(c.body(), BODY);

        let with_ext = Checkpoint {
            extensions: vec!["ext one".into(), "— two".into()],
            ..c
        };
        let body = with_ext.body();
        assert!(body.ends_with("=\next one\n— two\n"));
        assert_eq!(Checkpoint::parse_body(&body).unwrap(), with_ext);

        let zero = Checkpoint {
            origin: "o".into(),
            size: 0,
            root: crate::empty_tree_hash(),
            extensions: vec![],
        };
        assert_eq!(Checkpoint::parse_body(&zero.body()).unwrap(), zero);
        let max = Checkpoint {
            size: u64::MAX,
            ..zero
        };
        assert_eq!(Checkpoint::parse_body(&max.body()).unwrap(), max);
    }

    #[test]
    fn strict() {
        let root = "NGxrnLicS3b6ydyyDNqG46AcCldBfBOQKOrNRTj96Vs=";
        for body in [
            "".to_string(),
            "\n".to_string(),
            BODY.trim_end().to_string(),
            format!("\n1000\n{root}\n"),
            "o\n1000\n".to_string(),
            "o\n".to_string(),
            format!("o\n01000\n{root}\n"),
            format!("o\n00\n{root}\n"),
            format!("o\n+1000\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            format!("o\n 1000\n{root}\n"),
            format!("o\n1000 \n{root}\n"),
            format!("o\n\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            "o\n1000\nNGxrnLicS3b6ydyyDNqG46AcCldBfBOQKOrNRTj96Vs\n".to_string(),
            "o\n1000\nNGxrnLicS3b6ydyyDNqG46AcCldBfBOQKOrNRTj96Vt=\n".to_string(),
            "o\n1000\nNGxrnLicS3b6ydyyDNqG46AcCldBfBOQKOrNRTj96Q==\n".to_string(),
            "o\n1000\nNGxrnLicS3b6ydyyDNqG46AcCldBfBOQKOrNRTj96VsA\n".to_string(),
            format!("o\n1000\n{root} \n"),
            format!("o\n1000\n{root}\r\n"),
            format!("o\n1000\n{root}\n\n"),
            format!("o\n1000\n{root}\next\n\n"),
            format!("o\n1000\n{root}\n\next\n"),
        ] {
            assert!(
                matches!(
                    Checkpoint::parse_body(&body),
                    Err(Error::Malformed {
                        what: "checkpoint",
                        ..
                    })
                ),
                "{body:?}"
            );
        }
    }
}
